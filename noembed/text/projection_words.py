"""Token normalisation and the per-process word table of the projection front end.

Split from noembed.text.projection (PRADO / pQRNN, seq_flow_lite `sequence_string_projection`):
how a token becomes the word the op hashes (LowerCaseUTF8WithSupportedUnicodes, U+FFFD and
vocabulary filtering), and a bounded cache of the hash codes and int8 features of the words a
process has met, so a call hashes only its new tokens. Results never depend on the cache.
"""

import dataclasses
import functools
import itertools
import os
import re
import threading

import numpy as np

from noembed.text import murmur

NULL_TOKEN = "<null>"
_REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
_SIMPLE_LOWER_EXCEPTIONS = {"\u0130": "i"}
_SLOW_PATH = re.compile("[\ufffd\u0130\u03a3]")
_SLOW_OR_SURROGATE = re.compile("[\ufffd\u0130\u03a3\ud800-\udfff]")
# Feature value of each 2-bit field of every uint16, least significant field first: [65536, 8].
# Stored as one uint64 per uint16 (8 int8 features), so a gather moves words, not bytes.
_FIELD_VALUES = np.array([0, 1, -1, 0], np.int8)
_HALFWORD_FEATURES = np.ascontiguousarray(
    _FIELD_VALUES[(np.arange(2**16)[:, None] >> (2 * np.arange(8))) & 3]).view(np.uint64)[:, 0]
# Word tables cached per process: rows and key code points per table before it starts over
# (2^16 rows hold ~40 MB at feature_size=512; 2^22 code points at most 16 MB of keys), and
# distinct (feature_size, lowercase, vocabulary) tables kept.
_TABLE_CAPACITY = 2**16
_TABLE_KEY_CHARS = 2**22
_TABLES_PER_PROCESS = 4


def to_valid_unicode(text: str) -> str:
  """`text` with each lone surrogate replaced by U+FFFD, so that it encodes as UTF-8."""
  try:
    text.encode("utf-8")
  except UnicodeEncodeError:
    return _SURROGATE.sub(_REPLACEMENT, text)
  return text


def simple_lower(char: str) -> str:
  """Unicode simple lowercase mapping of one code point (tolowerrune)."""
  return _SIMPLE_LOWER_EXCEPTIONS.get(char) or char.lower()


def vocabulary_set(vocabulary: str) -> frozenset[str]:
  """InitializeVocabulary: the allowed runes; U+FFFD and upper-case runes are ignored as there."""
  return frozenset(char for char in to_valid_unicode(vocabulary)
                   if char != _REPLACEMENT and simple_lower(char) == char)


@dataclasses.dataclass(frozen=True)
class Normalizer:
  """token -> (word, first_cap, all_caps), as LowerCaseUTF8WithSupportedUnicodes."""

  lowercase: bool
  vocabulary: frozenset[str]

  def __call__(self, token: str, caps: bool = False) -> tuple[str, bool, bool]:
    """first_cap and all_caps are computed only when `caps` (False otherwise)."""
    token = to_valid_unicode(token)
    # str.lower() is the rune-by-rune simple mapping unless the token holds U+0130 (full
    # mapping: two code points) or a capital sigma (final-sigma rule).
    if self.vocabulary or _SLOW_PATH.search(token):
      return self._by_rune(token)
    lowered = token.lower()
    first_cap = all_caps = False
    if caps:
      first_cap = token[0] != lowered[0] and token[1:] == lowered[1:]
      all_caps = all(char != lower for char, lower in zip(token, lowered))
    return lowered if self.lowercase else token, first_cap, all_caps

  def _by_rune(self, token: str) -> tuple[str, bool, bool]:
    kept = []
    first_cap = all_caps = False
    for char in token:
      if char == _REPLACEMENT:
        continue
      lower = simple_lower(char)
      if self.vocabulary and lower not in self.vocabulary:
        continue
      is_lower = lower == char
      if kept:
        first_cap &= is_lower
        all_caps &= not is_lower
      else:
        first_cap = all_caps = not is_lower
      kept.append(lower if self.lowercase else char)
    return "".join(kept), first_cap, all_caps


class WordTable:
  """The hash codes and int8 features of every token a process has met, for one option set.

  A cache across calls (results do not depend on it): `token_rows` maps a raw token, before
  sanitising and lower-casing, and `word_rows` a normalised word, to its row; row 0 is the zero
  padding row. A call's new tokens are normalised and hashed together, in new rows, and
  unpacked to features when first needed (`features`). Rows are written once: growing or
  starting over allocates new arrays, so a call that read the arrays under `lock` can gather
  from them after releasing it. A call that starts with at least `capacity` rows taken, or
  `key_chars` code points of keys kept, starts the table over (cheaper than LRU bookkeeping,
  which would cost a Python step per token); one call can grow it past both.
  """

  def __init__(self, feature_size: int, normalizer: Normalizer, capacity: int,
               key_chars: int):
    self.feature_size = feature_size
    self.normalizer = normalizer
    self.capacity = capacity
    self.max_key_chars = key_chars
    self.lock = threading.Lock()
    self.start_over()

  def start_over(self) -> None:
    self.codes = np.zeros((self.capacity, 2 * -(-self.feature_size // 64)), np.uint64)
    self.feature_rows = np.zeros((self.capacity, self.feature_size), np.int8)
    self.rows = self.unpacked = 1
    self.key_chars = 0
    self.token_rows, self.word_rows = {}, {}

  def start_over_if_full(self) -> None:
    if self.rows >= self.capacity or self.key_chars >= self.max_key_chars:
      self.start_over()

  def rows_of_tokens(self, tokens: list[str]) -> np.ndarray:
    """int64 [N]: the rows of raw tokens (their normalised words' codes)."""
    return self._rows(tokens, self.token_rows, self._normalized)

  def rows_of_words(self, words: list[str]) -> np.ndarray:
    """int64 [N]: the rows of normalised words."""
    return self._rows(words, self.word_rows, list)

  def _rows(self, keys: list[str], key_rows: dict[str, int], to_words) -> np.ndarray:
    rows = np.fromiter(map(key_rows.get, keys, itertools.repeat(0)), np.int64, len(keys))
    if rows.all():
      return rows
    missing = np.flatnonzero(rows == 0)
    missing_keys = list(map(keys.__getitem__, missing.tolist()))
    new_keys = list(dict.fromkeys(missing_keys))
    key_rows.update(zip(new_keys, self._add(to_words(new_keys))))
    self.key_chars += sum(map(len, new_keys))
    rows[missing] = np.fromiter(map(key_rows.__getitem__, missing_keys), np.int64, missing.size)
    return rows

  def _normalized(self, tokens: list[str]) -> list[str]:
    joined = "".join(tokens)
    if self.normalizer.vocabulary or _SLOW_OR_SURROGATE.search(joined):
      return [self.normalizer(token)[0] for token in tokens]
    return list(map(str.lower, tokens)) if self.normalizer.lowercase else tokens

  def _add(self, words: list[str]) -> range:
    """Hashes `words` into new rows; returns the rows."""
    if "" in words:
      words = [word or NULL_TOKEN for word in words]
    encoded = list(map(str.encode, words))   # UTF-8: words hold no lone surrogates
    start, stop = self.rows, self.rows + len(encoded)
    self.codes = _with_rows(self.codes, stop)
    self.codes[start:stop] = murmur.hash_codes(encoded, self.feature_size)
    self.rows = stop
    return range(start, stop)

  def features(self) -> np.ndarray:
    """int8 [rows, F]: the features of every row."""
    if self.unpacked < self.rows:
      self.feature_rows = _with_rows(self.feature_rows, self.rows)
      halfwords = self.codes[self.unpacked:self.rows].astype("<u8").view("<u2")
      self.feature_rows[self.unpacked:self.rows] = (
          _HALFWORD_FEATURES[halfwords].view(np.int8)[:, :self.feature_size])
      self.unpacked = self.rows
    return self.feature_rows


def _with_rows(array: np.ndarray, rows: int) -> np.ndarray:
  """`array`, or a copy with at least `rows` rows (twice as many) when it has fewer."""
  if rows <= len(array):
    return array
  grown = np.zeros((max(rows, 2 * len(array)),) + array.shape[1:], array.dtype)
  grown[:len(array)] = array
  return grown


@functools.lru_cache(maxsize=_TABLES_PER_PROCESS)
def word_table(feature_size: int, lowercase: bool, vocabulary: str) -> WordTable:
  return WordTable(feature_size, Normalizer(lowercase, vocabulary_set(vocabulary)),
                    _TABLE_CAPACITY, _TABLE_KEY_CHARS)


def clear_cache() -> None:
  """Drops the cached word tables of this process (results never depend on them)."""
  word_table.cache_clear()


# A forked child (e.g. a data loader worker) starts with no tables, so no lock a parent thread
# held at the fork is inherited.
if hasattr(os, "register_at_fork"):
  os.register_at_fork(after_in_child=clear_cache)
