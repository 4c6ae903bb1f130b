"""ByT5 byte ids: UTF-8 bytes shifted by 3 past pad, eos and unk.

Paper: Xue et al. 2022, "ByT5: Towards a token-free future with pre-trained byte-to-byte models".
Reference: seqio.ByteVocabulary (google/seqio), whose ids `transformers.ByT5Tokenizer` reproduces;
the tests check ids against ByT5Tokenizer. Byte b has id b + 3; ids 0, 1, 2 are pad, eos, unk.

Two differences from the references, both for text they cannot encode or would not keep intact:
- Lone surrogates (e.g. "\\ud800", where ByT5Tokenizer raises UnicodeEncodeError) become U+FFFD,
  as a WHATWG TextEncoder does; a surrogate pair written as two code units becomes its character.
- Literal special-token strings ("</s>", "<pad>", "<extra_id_0>") are encoded as their bytes:
  ByT5Tokenizer would turn them into special ids, seqio (like this module) does not.
Truncation keeps whole characters unless `split_characters=True` (ByT5Tokenizer's behaviour).
"""

from collections.abc import Sequence

import numpy as np

from noembed.text.common import (TruncationStats, check_positive, check_texts, pad_rows,
                                 positions_in_rows)

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
OFFSET = 3
VOCAB_SIZE = 259
_NUM_SENTINELS = 125  # ByT5Tokenizer's extra_ids
_MAX_CHARACTER_BYTES = 4


def sentinel(k: int) -> int:
  """Id of ByT5's k-th span-corruption sentinel: 258 - k, counting down.

  google-research/byt5 pre-trains with seqio.ByteVocabulary() (259 ids, no extra ids) and T5's
  span corruption, whose sentinels count down from vocab_size - 1, so they reuse the ids of
  bytes 0xFF, 0xFE, ... . transformers' "<extra_id_k>" ids differ (259 + k in transformers 5).
  """
  if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < _NUM_SENTINELS:
    raise ValueError(f"sentinel index must be an int in [0, {_NUM_SENTINELS}), got {k!r}")
  return VOCAB_SIZE - 1 - k


def to_utf8(text: str) -> bytes:
  """UTF-8 of `text`; lone surrogates become U+FFFD, surrogate pairs their character."""
  try:
    return text.encode("utf-8")
  except UnicodeEncodeError:
    repaired = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return repaired.encode("utf-8")


def num_bytes(texts: Sequence[str]) -> np.ndarray:
  """UTF-8 byte counts int32 [B] of `texts` (as encoded here, see to_utf8)."""
  texts = check_texts(texts)
  return np.array([len(to_utf8(text)) for text in texts], dtype=np.int32)


def _character_safe_cut(joined: np.ndarray, starts: np.ndarray, cuts: np.ndarray) -> np.ndarray:
  """Moves each cut back until the byte at it starts a character (is no continuation byte)."""
  cuts = cuts.copy()
  for _ in range(_MAX_CHARACTER_BYTES - 1):
    inside = cuts > 0
    inside[inside] = (joined[starts[inside] + cuts[inside]] & 0xC0) == 0x80
    if not inside.any():
      break
    cuts[inside] -= 1
  return cuts


def encode(texts: Sequence[str], max_length: int, add_eos: bool = True, *,
           stats: TruncationStats | None = None,
           split_characters: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Byte ids int32 [B, max_length] and mask bool [B, max_length] (eos included in the mask).

  Texts longer than max_length (less one for eos) are cut at the last whole character that
  fits, or at exactly that many bytes with split_characters=True; `stats` counts bytes dropped.
  """
  texts = check_texts(texts)
  check_positive("max_length", max_length)
  budget = max_length - 1 if add_eos else max_length
  encoded = [to_utf8(text) for text in texts]
  totals = np.array([len(data) for data in encoded], dtype=np.int64)
  # One byte past the budget is kept so the cut can see whether it lands inside a character.
  prefixes = [data[:budget + 1] for data in encoded]
  prefix_lengths = np.array([len(data) for data in prefixes], dtype=np.int64)
  joined = np.frombuffer(b"".join(prefixes), dtype=np.uint8)
  starts = np.zeros(len(texts), dtype=np.int64)
  np.cumsum(prefix_lengths[:-1], out=starts[1:])
  kept = np.minimum(totals, budget)
  if not split_characters:
    truncated = totals > budget
    kept[truncated] = _character_safe_cut(joined, starts[truncated], kept[truncated])

  flat_ids = joined[np.repeat(starts, kept) + positions_in_rows(kept)].astype(np.int32) + OFFSET
  return pad_rows(flat_ids, kept, totals, max_length, pad_id=PAD_ID, eos_id=EOS_ID,
                  add_eos=add_eos, stats=stats)


def decode(ids) -> list[str]:
  """Texts of byte ids [B, L] up to each row's first eos (seqio.ByteVocabulary.decode).

  Pad, unk and ids past 258 are dropped, and so are bytes that do not form valid UTF-8, which
  includes sentinels 0-10 (bytes 0xF5-0xFF never occur in UTF-8).
  """
  ids = np.asarray(ids)
  if ids.ndim != 2:
    raise ValueError(f"ids must have shape [batch, length], got shape {ids.shape}")
  texts = []
  for row in ids:
    eos = np.flatnonzero(row == EOS_ID)
    if eos.size:
      row = row[:eos[0]]
    row = row[(row >= OFFSET) & (row < VOCAB_SIZE)]
    texts.append((row - OFFSET).astype(np.uint8).tobytes().decode("utf-8", errors="ignore"))
  return texts
