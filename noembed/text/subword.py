"""Subword baseline: a sentencepiece model (unigram or BPE) that every other method is compared to.

Papers: Kudo & Richardson 2018, "SentencePiece" (unigram LM: Kudo 2018; BPE: Sennrich et al.
2016). Reference: google/sentencepiece, trained with the id layout of T5's vocabularies and
seqio.SentencePieceVocabulary (pad 0, eos 1, unk 2), plus `<mask>` at id 3 for masked
prediction. `<mask>` is a control symbol, not a user-defined one, so a literal "<mask>" in the
text is encoded as ordinary pieces instead of colliding with the mask id.

Training keeps the text exact, so decode(encode(t)) == t: identity normalisation, no whitespace
collapsing, byte fallback (no unk), single thread and no sentence sampling or shuffling (the
model file is the same for the same texts and options). The exception is U+2581 "▁" in the
text, which sentencepiece's whitespace escaping decodes as a space. Lone surrogates become
U+FFFD first (as in noembed.text.bytes).

`unit_bytes` is what each piece stands for in UTF-8 bytes, counting the space marker "▁" as the
one byte of a space and a byte-fallback piece as one byte; the dummy-prefix "▁" that
sentencepiece puts before every text stands for no byte. So an untruncated row's unit_bytes sum
to the text's UTF-8 length, which makes bits per byte exact.
"""

import io
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from noembed.text.bytes import to_utf8
from noembed.text.common import TruncationStats, check_positive, check_texts, pad_rows

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
MASK_ID = 3
MASK_PIECE = "<mask>"
MODEL_TYPES = ("unigram", "bpe")
_SPACE_MARKER = "\u2581"
_FIRST_BYTE_ID = 4  # <0x00>; byte-fallback pieces follow the four reserved ids.


def train(texts: Sequence[str], *, vocab_size: int, model_type: str, model_prefix: str,
          character_coverage: float = 0.98) -> str:
  """Trains a model on `texts` and writes it to `model_prefix + ".model"`; returns that path.

  The file is written to a temporary name and renamed, so a reader never sees half a file.
  character_coverage: share of characters that get their own piece (sentencepiece accepts
  0.98..1); rarer ones are spelled with byte pieces.
  """
  texts = check_texts(texts)
  check_positive("vocab_size", vocab_size)
  if model_type not in MODEL_TYPES:
    raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
  if not 0.98 <= character_coverage <= 1.0:
    raise ValueError(f"character_coverage must be in [0.98, 1], got {character_coverage!r}")
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter([to_utf8(text).decode("utf-8") for text in texts if text]),
      model_writer=model,
      model_type=model_type,
      vocab_size=vocab_size,
      character_coverage=character_coverage,
      pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      control_symbols=[MASK_PIECE],
      byte_fallback=True,
      normalization_rule_name="identity",
      remove_extra_whitespaces=False,
      allow_whitespace_only_pieces=True,
      max_sentence_length=1 << 20,
      input_sentence_size=0,
      shuffle_input_sentence=False,
      num_threads=1,
      minloglevel=2,
  )
  path = model_prefix + ".model"
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=directory, prefix=".tmp-", suffix=".model",
                                   delete=False) as partial:
    partial.write(model.getvalue())
  os.chmod(partial.name, 0o644)
  os.replace(partial.name, path)
  return path


class SubwordModel:
  """A trained sentencepiece model with fixed-length numpy encoding (see module docstring)."""

  def __init__(self, path: str):
    with open(path, "rb") as model_file:
      serialized = model_file.read()
    proto = sentencepiece_model_pb2.ModelProto.FromString(serialized)
    pieces = proto.pieces
    if (len(pieces) <= _FIRST_BYTE_ID + 255 or pieces[MASK_ID].piece != MASK_PIECE
        or pieces[_FIRST_BYTE_ID].piece != "<0x00>" or proto.trainer_spec.pad_id != PAD_ID
        or proto.trainer_spec.eos_id != EOS_ID or proto.trainer_spec.unk_id != UNK_ID):
      raise ValueError(f"{path} is not a model made by noembed.text.subword.train: expected "
                       f"pad/eos/unk/{MASK_PIECE} at ids 0-3 and byte pieces from id 4")
    self.path = path
    self.processor = spm.SentencePieceProcessor(model_proto=serialized)
    self.vocab_size = self.processor.get_piece_size()
    self.model_type = sentencepiece_model_pb2.TrainerSpec.ModelType.Name(
        proto.trainer_spec.model_type).lower()
    self.add_dummy_prefix = proto.normalizer_spec.add_dummy_prefix
    byte_type = sentencepiece_model_pb2.ModelProto.SentencePiece.BYTE
    normal_types = (sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL,
                    sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    self.piece_bytes = np.array(
        [1 if piece.type == byte_type
         else len(piece.piece.replace(_SPACE_MARKER, " ").encode("utf-8"))
         if piece.type in normal_types else 0 for piece in pieces], dtype=np.int32)
    self._starts_with_marker = np.array(
        [piece.type in normal_types and piece.piece.startswith(_SPACE_MARKER)
         for piece in pieces])
    continuation = np.zeros(self.vocab_size, dtype=bool)
    continuation[_FIRST_BYTE_ID + 0x80:_FIRST_BYTE_ID + 0xC0] = True
    self._continuation_byte = continuation

  def encode(self, texts: Sequence[str], max_length: int, add_eos: bool = True, *,
             stats: TruncationStats | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Piece ids int32, mask bool and unit_bytes int32, each [B, max_length].

    Rows longer than max_length pieces (less one for eos) are cut there, moved back so as not
    to split the byte pieces of one character; `stats` counts pieces dropped.
    """
    texts = check_texts(texts)
    check_positive("max_length", max_length)
    budget = max_length - 1 if add_eos else max_length
    pieces = self.processor.encode([to_utf8(text) for text in texts], num_threads=1)
    totals = np.array([len(row) for row in pieces], dtype=np.int64)
    kept = np.minimum(totals, budget)
    for row in np.flatnonzero(totals > budget):
      while kept[row] > 0 and self._continuation_byte[pieces[row][kept[row]]]:
        kept[row] -= 1
    flat = np.fromiter((piece for row, count in zip(pieces, kept.tolist())
                        for piece in row[:count]), dtype=np.int32, count=int(kept.sum()))
    ids, mask = pad_rows(flat, kept, totals, max_length, pad_id=PAD_ID, eos_id=EOS_ID,
                         add_eos=add_eos, stats=stats)
    unit_bytes = self.piece_bytes[ids]  # eos and pad are control pieces: 0 bytes
    if self.add_dummy_prefix:
      first = ids[:, 0]
      unit_bytes[:, 0] -= ((kept > 0) & self._starts_with_marker[first]).astype(np.int32)
    return ids, mask, unit_bytes

  def decode(self, ids) -> list[str]:
    """Texts of piece ids [B, L], up to each row's first eos; pad, unk, <mask> and ids past
    the vocabulary are dropped."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
      raise ValueError(f"ids must have shape [batch, length], got shape {ids.shape}")
    rows = []
    for row in ids:
      eos = np.flatnonzero(row == EOS_ID)
      if eos.size:
        row = row[:eos[0]]
      rows.append(row[(row > MASK_ID) & (row < self.vocab_size)].tolist())
    return self.processor.decode(rows) if rows else []  # decode([]) would be one text
