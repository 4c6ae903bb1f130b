"""CANINE code point ids: each character is its Unicode code point, specials in private use.

Paper: Clark et al. 2022, "CANINE: Pre-training an efficient tokenization-free encoder for
language representation". Reference: google-research/language `language/canine` (special code
points) and `transformers.CanineTokenizer`, whose ids the tests check.

Layout `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, token types 0 over `[CLS] a [SEP]` and 1 over
`b [SEP]` (BERT style, as CANINE's segment ids and transformers 4.x; transformers 5 returns all
zeros), also when add_special_tokens=False (CanineTokenizer then returns zeros).

Truncation is CanineTokenizer's `truncation="longest_first"`: code points are removed from the
end of the longer text until both fit, ties taking the extra one from `b`. Lone surrogates are
kept as their code unit value (as CanineTokenizer does); literal private-use specials in the
text are kept as plain code points (CanineTokenizer would strip whitespace left of a literal
U+E003 [MASK]). NUL has the pad id 0 (as in CANINE); only the mask marks it as real.
"""

from collections.abc import Sequence

import numpy as np

from noembed.text.common import TruncationStats, check_positive, check_texts

PAD = 0
CLS = 0xE000
SEP = 0xE001
BOS = 0xE002
MASK = 0xE003
RESERVED = 0xE004
UNICODE_VOCAB_SIZE = 0x110000


def _pair_budgets(first: np.ndarray, second: np.ndarray, budget: int) -> tuple[np.ndarray,
                                                                               np.ndarray]:
  """Lengths kept of each text of a pair under transformers' longest_first truncation."""
  to_remove = np.maximum(first + second - budget, 0)
  first_remove = np.minimum(np.abs(first - second), to_remove)
  second_remove = to_remove - first_remove
  first_longer = first > second
  from_first = np.where(first_longer, first_remove + second_remove // 2, second_remove // 2)
  from_second = to_remove - from_first
  return first - from_first, second - from_second


def encode(texts: Sequence[str], max_length: int, pairs: Sequence[str] | None = None,
           add_special_tokens: bool = True, *,
           stats: TruncationStats | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Code point ids int32, mask bool and token_type_ids int32, each [B, max_length].

  `pairs`, when given, holds the second text of each example. `stats` records one entry per
  example: code points kept and in total over both texts.
  """
  texts = check_texts(texts)
  check_positive("max_length", max_length)
  if pairs is not None:
    pairs = check_texts(pairs)
    if len(pairs) != len(texts):
      raise ValueError(f"pairs has {len(pairs)} texts, expected one per text ({len(texts)})")
  num_specials = (2 if pairs is None else 3) if add_special_tokens else 0
  budget = max_length - num_specials
  if budget < 0:
    raise ValueError(f"max_length={max_length} leaves no room for the {num_specials} special "
                     f"code points; expected max_length >= {num_specials}")

  batch = len(texts)
  first_lengths = np.array([len(text) for text in texts], dtype=np.int64)
  second_lengths = (np.zeros(batch, dtype=np.int64) if pairs is None
                    else np.array([len(text) for text in pairs], dtype=np.int64))
  if pairs is None:
    first_kept, second_kept = np.minimum(first_lengths, budget), second_lengths
  else:
    first_kept, second_kept = _pair_budgets(first_lengths, second_lengths, budget)

  # Specials are inserted as characters so that one UTF-32 encoding yields every row's ids.
  cls, sep = (chr(CLS), chr(SEP)) if add_special_tokens else ("", "")
  if pairs is None:
    rows = [cls + text[:kept] + sep for text, kept in zip(texts, first_kept.tolist())]
  else:
    rows = [cls + text[:kept] + sep + pair[:pair_kept] + sep
            for text, kept, pair, pair_kept in zip(texts, first_kept.tolist(), pairs,
                                                   second_kept.tolist())]
  joined = np.frombuffer("".join(rows).encode("utf-32-le", "surrogatepass"), dtype="<u4")
  lengths = first_kept + second_kept + num_specials
  starts = np.zeros(batch, dtype=np.int64)
  np.cumsum(lengths[:-1], out=starts[1:])
  ids = np.full((batch, max_length), PAD, dtype=np.int32)
  row_index = np.repeat(np.arange(batch), lengths)
  columns = np.arange(joined.size) - np.repeat(starts, lengths)
  ids[row_index, columns] = joined.astype(np.int32)
  columns = np.arange(max_length)[None, :]
  if pairs is None:
    token_type_ids = np.zeros((batch, max_length), dtype=np.int32)
  else:
    second_start = first_kept + (2 if add_special_tokens else 0)
    token_type_ids = ((columns >= second_start[:, None])
                      & (columns < lengths[:, None])).astype(np.int32)
  mask = columns < lengths[:, None]
  if stats is not None:
    totals = first_lengths + second_lengths
    for kept, total in zip((first_kept + second_kept).tolist(), totals.tolist()):
      stats.record(kept, total)
  return ids, mask, token_type_ids


def decode(ids) -> list[str]:
  """Texts of code point ids [B, L]: pad and the private-use specials are dropped, the texts
  of a pair are joined without separator. A NUL in the text has the pad id, so it is dropped
  too (the mask, which decode does not see, marks it as real)."""
  ids = np.asarray(ids)
  if ids.ndim != 2:
    raise ValueError(f"ids must have shape [batch, length], got shape {ids.shape}")
  texts = []
  for row in ids:
    row = row[(row != PAD) & ((row < CLS) | (row > RESERVED))]
    if row.size and (row.min() < 0 or row.max() >= UNICODE_VOCAB_SIZE):
      raise ValueError(f"code point ids must be in [0, {UNICODE_VOCAB_SIZE:#x}), got "
                       f"{row.min()}..{row.max()}")
    texts.append(row.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass"))
  return texts
