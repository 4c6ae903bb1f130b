"""PRADO / pQRNN ternary projection: text -> per-token {-1, 0, +1} hash features.

Papers: Kaliamoorthi et al. 2019, "PRADO: Projection Attention Networks for Document
Classification On-Device"; Kaliamoorthi et al. 2021, "Distilling Large Language Models into Tiny
and Effective Students using pQRNN". Reference: tensorflow/models, research/seq_flow_lite,
`tf_ops/sequence_string_projection.cc` with `tf_ops/projection_util.{h,cc}` and
`tf_ops/text_distorter.{h,cc}` (hashtype "murmur"). Hash codes and features are bit-exact with
that op; each token's two bits per feature map through {0: 0, 1: +1, 2: -1, 3: 0}, least
significant bits first.

As the op: split on ' ' (U+0020 only) or per code point, with its `max_splits` rule (quirks
included); every token lower-cased rune by rune (simple mapping), U+FFFD dropped (the op drops
`Runeerror`), runes outside `vocabulary` dropped; an empty word hashes as "<null>"; "<BOS>" and
"<EOS>" are the op's begin/end tokens; the word-novelty (feature F-1), document-size (F-2),
first-capital (F-3) and all-capitals (F-4) features overwrite the last features.

Where this differs from the op, and why:
- Input is Python str: a lone surrogate (not encodable as UTF-8) becomes U+FFFD, which the
  lower-casing step then drops like the op drops invalid UTF-8. Surrogate pairs stored as two
  code points are not joined.
- Lower-casing uses Python's Unicode 14 simple lowercase mapping (U+0130 -> U+0069, sigma always
  to U+03C3). The op's `tolowerrune` comes from plan9port libutf, whose older tables agree for
  ASCII, Latin, Greek, Cyrillic and Armenian but lack case pairs added to Unicode later (e.g.
  Cherokee, Georgian Mtavruli, most cased scripts beyond the BMP). `lowercase=False` (not an op
  option) keeps case but still applies the U+FFFD and vocabulary filters.
- The op has no fixed length. Here each text gives at most `max_tokens` positions, BOS and EOS
  included; longer texts keep their first tokens, EOS stays last, and the cut is counted in
  `stats`. The document-size feature still counts every token (after `max_splits`), and an empty
  document counts as one token (the op's log2(0) would give -inf).
- Randomness: the op draws from one Philox stream carried over all calls of the op instance, so
  its draws cannot be reproduced outside that process. Here text i of a call draws from
  `np.random.default_rng([distortion_seed, i])`: first, when distortion is on, four arrays over
  its kept tokens (apply, kind, index, insert point), then one array over its positions for each
  capitalisation feature sampled with 0 < p < 1. The distortion edits code points (the op edits
  UTF-16 units) and the re-inserted character starts unset for each text.
- `exclude_nonalphaspace_unicodes`, `token_separators` and `normalize_repetition` are not
  implemented (they keep their op defaults: off).

Speed: each process keeps, per (feature_size, lowercase, vocabulary), a bounded table of the
hash codes and features of the tokens it has met (`projection_words.WordTable`; `clear_cache`
empties it), so a call only normalises and hashes its new tokens, all at once, and writes its
output with one gather. Results never depend on what the table holds.
"""

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

from noembed.text import projection_words
from noembed.text.common import TruncationStats, check_positive, check_texts
from noembed.text.projection_words import (NULL_TOKEN, clear_cache, simple_lower,
                                           to_valid_unicode, vocabulary_set)

BOS_TOKEN = "<BOS>"
EOS_TOKEN = "<EOS>"
SPLIT_MODES = ("space", "codepoint")
# Feature offsets from the end, as kWordNoveltyOffset, kDocSizeOffset, kFirstCapOffset and
# kAllCapsOffset in projection_util.h.
_NOVELTY_OFFSET, _DOC_SIZE_OFFSET, _FIRST_CAP_OFFSET, _ALL_CAPS_OFFSET = 1, 2, 3, 4


@dataclasses.dataclass(frozen=True)
class ProjectionOptions:
  """The op's attributes (names kept where they exist) plus the fixed output length.

  feature_size: F, features per token. max_tokens: T, positions per text incl. BOS/EOS.
  split_on: "space" or "codepoint". max_splits: the op's token limit (-1: none).
  distortion_probability: per-token probability of deleting, moving or re-inserting a character.
  word_novelty_bits (0-7), doc_size_levels (0-16): the op's non-ternary features (float
  output). add_first_cap_feature, add_all_caps_feature: probability that each position carries
  that ternary feature.
  """

  feature_size: int = 512
  max_tokens: int = 128
  split_on: str = "space"
  lowercase: bool = True
  vocabulary: str = ""
  add_bos: bool = False
  add_eos: bool = True
  max_splits: int = -1
  distortion_probability: float = 0.0
  distortion_seed: int = 0
  word_novelty_bits: int = 0
  doc_size_levels: int = 0
  add_first_cap_feature: float = 0.0
  add_all_caps_feature: float = 0.0

  def __post_init__(self):
    check_positive("feature_size", self.feature_size)
    check_positive("max_tokens", self.max_tokens)
    if self.feature_size > 4096:
      raise ValueError(f"feature_size must be <= 4096 (the op's limit), got {self.feature_size}")
    if self.split_on not in SPLIT_MODES:
      raise ValueError(f"split_on must be one of {SPLIT_MODES}, got {self.split_on!r}")
    if self.max_tokens < self.add_bos + self.add_eos + 1:
      raise ValueError(f"max_tokens={self.max_tokens} leaves no room for a token next to "
                       f"add_bos={self.add_bos}, add_eos={self.add_eos}")
    for name, low, high in (("word_novelty_bits", 0, 7), ("doc_size_levels", 0, 16)):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")
    for name in ("distortion_probability", "add_first_cap_feature", "add_all_caps_feature"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
    for name, offset, enabled in (
        ("word_novelty_bits", _NOVELTY_OFFSET, self.word_novelty_bits),
        ("doc_size_levels", _DOC_SIZE_OFFSET, self.doc_size_levels),
        ("add_first_cap_feature", _FIRST_CAP_OFFSET, self.add_first_cap_feature),
        ("add_all_caps_feature", _ALL_CAPS_OFFSET, self.add_all_caps_feature)):
      if enabled and self.feature_size < offset:
        raise ValueError(f"{name} needs feature_size >= {offset}, got {self.feature_size}")

  @property
  def ternary(self) -> bool:
    """Whether every feature is in {-1, 0, +1} (no novelty or document-size feature)."""
    return not (self.word_novelty_bits or self.doc_size_levels)

  @property
  def needs_rng(self) -> bool:
    return (self.distortion_probability > 0.0 or 0.0 < self.add_first_cap_feature < 1.0
            or 0.0 < self.add_all_caps_feature < 1.0)


def split_tokens(text: str, split_on: str, max_splits: int) -> list[str]:
  """SplitBySpaceAsPairs / SplitByCharAsPairs, including how `max_splits` cuts.

  On spaces, with max_splits >= 1 the op takes max_splits - 1 words that end in a space (empty
  ones skipped but still counted as steps) and then the next word only if it is not empty. A
  max_splits of 0 or below means no limit in both modes (the op compares as size_t).
  """
  if split_on == "codepoint":
    return list(text[:max_splits] if max_splits >= 1 else text)
  segments = text.lstrip(" ").split(" ")
  if max_splits < 1:
    return [segment for segment in segments if segment]
  tokens = []
  index = 0
  while index < len(segments) - 1 and len(tokens) < max_splits - 1:
    if segments[index]:
      tokens.append(segments[index])
    index += 1
  if segments[index]:
    tokens.append(segments[index])
  return tokens


def _space_tokens(text: str) -> list[str]:
  """split_tokens(text, "space", -1), faster: str.split() where U+0020 is the only whitespace.

  Every other character str.split() splits on is non-printable (categories Z and C), so a
  printable text has no separator but U+0020 (tests/text/test_projection.py checks this).
  """
  return text.split() if text.isprintable() else [token for token in text.split(" ") if token]


def _splitter(options: ProjectionOptions):
  """text -> its tokens after max_splits (a str of code points when splitting per code point)."""
  if options.split_on == "codepoint":
    if options.max_splits < 1:
      return lambda text: text
    return lambda text: text[:options.max_splits]
  if options.max_splits < 1:
    return _space_tokens
  return lambda text: split_tokens(text, "space", options.max_splits)


def distort(words: list[str], rng: np.random.Generator, probability: float) -> list[str]:
  """TextDistorter::DistortText over one text's words, drawing as the module docstring says."""
  count = len(words)
  apply_draws = rng.random(count).tolist()
  kind_draws = rng.random(count).tolist()
  index_draws = rng.integers(0, 2**32, count, dtype=np.int64).tolist()
  insert_draws = rng.integers(0, 2**32, count, dtype=np.int64).tolist()
  random_char = ""
  distorted = []
  for word, apply, kind, index, insert in zip(
      words, apply_draws, kind_draws, index_draws, insert_draws):
    if apply < probability and word:
      chars = list(word)
      index %= len(chars)
      if kind < 0.33:
        random_char = chars.pop(index)
      elif kind < 0.66:
        if len(chars) > 2:
          random_char = chars.pop(index)
          chars.insert(insert % len(chars), random_char)
      elif random_char and random_char != "\0":
        chars.insert(index, random_char)
      word = "".join(chars)
    distorted.append(word)
  return distorted


@dataclasses.dataclass
class _Positions:
  """Every text's positions, as rows of a word table (hashed once per process)."""

  word_ids: np.ndarray      # int64 [B, T], 0 (the zero row) at padding
  mask: np.ndarray          # bool [B, T]
  codes: np.ndarray         # uint64 [rows, 2P], the table's hash codes
  features: np.ndarray | None  # int8 [rows, F], the table's features; None unless asked for
  doc_tokens: np.ndarray    # int64 [B], tokens per text after max_splits
  first_cap: np.ndarray | None = None  # float32 [B, T] in {-1, 0, 1}, None when off
  all_caps: np.ndarray | None = None


def _cap_values(flags: list[bool], probability: float, rng) -> list[float]:
  if probability >= 1.0:
    return [1.0 if flag else -1.0 for flag in flags]
  draws = rng.random(len(flags)).tolist()
  return [(1.0 if flag else -1.0) if draw <= probability else 0.0
          for flag, draw in zip(flags, draws)]


def _edited_rows(kept_tokens: list, options: ProjectionOptions, table: projection_words.WordTable):
  """(rows of the kept tokens, capitalisation values per position) with distortion or caps."""
  normalized_of = {}
  caps = {"first": options.add_first_cap_feature, "all": options.add_all_caps_feature}
  caps = {name: p for name, p in caps.items() if p > 0.0}
  flat_words = []
  flat_caps = {name: [] for name in caps}
  for text_index, tokens in enumerate(kept_tokens):
    rng = (np.random.default_rng([options.distortion_seed, text_index])
           if options.needs_rng else None)
    for token in set(tokens).difference(normalized_of):
      normalized_of[token] = table.normalizer(token, caps=True)
    normalized = list(map(normalized_of.__getitem__, tokens))
    words = [word for word, _, _ in normalized]
    if options.distortion_probability > 0.0:
      words = distort(words, rng, options.distortion_probability)
    flat_words.extend(words)
    for name, probability in caps.items():
      flag_index = 1 if name == "first" else 2
      flags = ([False] * options.add_bos + [item[flag_index] for item in normalized]
               + [False] * options.add_eos)
      flat_caps[name].extend(_cap_values(flags, probability, rng))
  return table.rows_of_words(flat_words), flat_caps


def _positions(texts: list[str], options: ProjectionOptions, stats: TruncationStats | None,
               with_features: bool) -> _Positions:
  room = options.max_tokens - options.add_bos - options.add_eos
  split = _splitter(options)
  kept_tokens, doc_tokens = [], []
  for text in texts:
    tokens = split(text)
    doc_tokens.append(len(tokens))
    kept_tokens.append(tokens[:room] if len(tokens) > room else tokens)
  counts = np.array([len(tokens) for tokens in kept_tokens], np.int64)
  if stats is not None:
    for kept, total in zip(counts.tolist(), doc_tokens):
      stats.record(kept, total)

  table = projection_words.word_table(options.feature_size, options.lowercase, options.vocabulary)
  flat_caps = {}
  with table.lock:
    table.start_over_if_full()
    if (options.distortion_probability > 0.0 or options.add_first_cap_feature
        or options.add_all_caps_feature):
      flat_rows, flat_caps = _edited_rows(kept_tokens, options, table)
    else:
      flat_rows = table.rows_of_tokens(list(itertools.chain.from_iterable(kept_tokens)))
    bos_row, eos_row = table.rows_of_words([BOS_TOKEN, EOS_TOKEN]).tolist()
    codes = table.codes
    features = table.features() if with_features else None

  columns = np.arange(options.max_tokens)
  mask = columns < (counts + options.add_bos + options.add_eos)[:, None]
  word_ids = np.zeros(mask.shape, np.int64)
  word_ids[(columns >= options.add_bos) & (columns < options.add_bos + counts[:, None])] = (
      flat_rows)
  if options.add_bos:
    word_ids[:, 0] = bos_row
  if options.add_eos:
    word_ids[np.arange(len(texts)), options.add_bos + counts] = eos_row
  positions = _Positions(word_ids, mask, codes, features, np.array(doc_tokens, np.int64))
  for name, values in flat_caps.items():
    grid = np.zeros(mask.shape, np.float32)
    grid[mask] = values
    setattr(positions, "first_cap" if name == "first" else "all_caps", grid)
  return positions


def _novelty(positions: _Positions, low_codes: np.ndarray, bits: int) -> np.ndarray:
  """float32 [B, T]: min(count of earlier equal word hashes * 2^-bits, 1) * 2 - 1."""
  text_index, position = np.nonzero(positions.mask)
  keys = low_codes[positions.word_ids[text_index, position]]
  order = np.lexsort((position, keys, text_index))
  sorted_text, sorted_keys = text_index[order], keys[order]
  starts = np.ones(order.size, bool)
  starts[1:] = (sorted_text[1:] != sorted_text[:-1]) | (sorted_keys[1:] != sorted_keys[:-1])
  group_start = np.maximum.accumulate(np.where(starts, np.arange(order.size), 0))
  earlier = np.empty(order.size, np.float32)
  earlier[order] = np.arange(order.size) - group_start
  values = np.minimum(earlier * np.float32(1.0 / (1 << bits)), np.float32(1.0)) * 2 - 1
  grid = np.zeros(positions.mask.shape, np.float32)
  grid[text_index, position] = values
  return grid


def _doc_size(positions: _Positions, levels: int) -> np.ndarray:
  tokens = np.maximum(positions.doc_tokens, 1).astype(np.float32)
  values = np.minimum(np.log2(tokens) / np.float32(levels), np.float32(1.0)) * 2 - 1
  return np.where(positions.mask, values[:, None], np.float32(0.0))


def project(texts: Sequence[str], feature_size: int = 512, max_tokens: int = 128, *,
            stats: TruncationStats | None = None, **options) -> tuple[np.ndarray, np.ndarray]:
  """texts -> (features [B, T, F], mask bool [B, T]); keyword options: ProjectionOptions.

  Features are int8 in {-1, 0, +1}, or float32 when word_novelty_bits or doc_size_levels adds
  the op's real-valued features. Padding positions are all zero.
  """
  texts = check_texts(texts)
  opts = ProjectionOptions(feature_size=feature_size, max_tokens=max_tokens, **options)
  positions = _positions(texts, opts, stats, with_features=True)
  # One gather writes every position once; padding takes the table's zero row 0.
  features = np.take(positions.features, positions.word_ids, axis=0)
  if not opts.ternary:
    features = features.astype(np.float32)
  if opts.word_novelty_bits:
    features[..., feature_size - _NOVELTY_OFFSET] = _novelty(
        positions, positions.codes[:, 0], opts.word_novelty_bits)
  if opts.doc_size_levels:
    features[..., feature_size - _DOC_SIZE_OFFSET] = _doc_size(positions, opts.doc_size_levels)
  for offset, values in ((_FIRST_CAP_OFFSET, positions.first_cap),
                         (_ALL_CAPS_OFFSET, positions.all_caps)):
    if values is not None:
      features[..., feature_size - offset] = values
  return features, positions.mask


def project_packed(texts: Sequence[str], feature_size: int = 512, max_tokens: int = 128, *,
                   stats: TruncationStats | None = None,
                   **options) -> tuple[np.ndarray, np.ndarray]:
  """texts -> (codes uint32 [B, T, F // 16], mask bool [B, T]); the same features as `project`.

  Feature f is bits 2 (f % 16) and up of codes[..., f // 16], decoded through
  {0: 0, 1: +1, 2: -1, 3: 0}: the op's 64-bit hash words split into two uint32, low half first.
  Padding positions are code 0. `noembed.nn.projection_codes.unpack` decodes on device.
  """
  texts = check_texts(texts)
  opts = ProjectionOptions(feature_size=feature_size, max_tokens=max_tokens, **options)
  if feature_size % 16:
    raise ValueError(f"packed codes need feature_size to be a multiple of 16, got {feature_size}")
  if not opts.ternary:
    raise ValueError("packed codes hold ternary features only; got word_novelty_bits="
                     f"{opts.word_novelty_bits}, doc_size_levels={opts.doc_size_levels}")
  positions = _positions(texts, opts, stats, with_features=False)
  # Each uint64 code read as two little-endian uint32: its low half first.
  packed = np.take(positions.codes.view("<u4")[:, :feature_size // 16], positions.word_ids,
                   axis=0)
  for offset, values in ((_FIRST_CAP_OFFSET, positions.first_cap),
                         (_ALL_CAPS_OFFSET, positions.all_caps)):
    if values is not None:
      feature = feature_size - offset
      shift = np.uint32(2 * (feature % 16))
      fields = np.where(values > 0, 1, np.where(values < 0, 2, 0)).astype(np.uint32)
      word = packed[..., feature // 16]
      packed[..., feature // 16] = (word & ~(np.uint32(3) << shift)) | (fields << shift)
  return packed, positions.mask
