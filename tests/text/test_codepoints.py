"""noembed.text.codepoints against transformers.CanineTokenizer (built directly, no files)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noembed.text import codepoints
from noembed.text.common import TruncationStats

# Any code point except surrogates (hypothesis' default) and CANINE's private-use specials,
# which CanineTokenizer parses as added tokens (stripping whitespace left of [MASK]).
TEXTS = st.text(st.characters(exclude_characters=[chr(c) for c in range(0xE000, 0xE005)]),
                max_size=30)
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tokenizer():
  transformers = pytest.importorskip("transformers")
  canine = transformers.CanineTokenizer()
  # transformers 5 returns all-zero token types; CANINE (and transformers 4) use 0/1 segments.
  canine.token_type_ids_pattern = "bert_style"
  return canine


def test_golden_pair():
  ids, mask, types = codepoints.encode(["ab"], 8, pairs=["é"])
  np.testing.assert_array_equal(ids, [[0xE000, 97, 98, 0xE001, 233, 0xE001, 0, 0]])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 1, 1, 0, 0]])
  np.testing.assert_array_equal(types, [[0, 0, 0, 0, 1, 1, 0, 0]])
  assert ids.dtype == np.int32 and types.dtype == np.int32 and mask.dtype == bool


@SETTINGS
@given(texts=st.lists(TEXTS, min_size=1, max_size=4), max_length=st.integers(2, 40),
       add_special_tokens=st.booleans())
def test_single_equals_canine_tokenizer(tokenizer, texts, max_length, add_special_tokens):
  ids, mask, types = codepoints.encode(texts, max_length,
                                       add_special_tokens=add_special_tokens)
  expected = tokenizer(texts, max_length=max_length, truncation=True, padding="max_length",
                       add_special_tokens=add_special_tokens)
  np.testing.assert_array_equal(ids, expected["input_ids"])
  np.testing.assert_array_equal(mask, np.asarray(expected["attention_mask"], dtype=bool))
  np.testing.assert_array_equal(types, expected["token_type_ids"])


@SETTINGS
@given(pairs=st.lists(st.tuples(TEXTS, TEXTS), min_size=1, max_size=4),
       max_length=st.integers(3, 40))
def test_pairs_equal_canine_tokenizer_longest_first(tokenizer, pairs, max_length):
  first, second = [a for a, _ in pairs], [b for _, b in pairs]
  stats = TruncationStats()
  ids, mask, types = codepoints.encode(first, max_length, pairs=second, stats=stats)
  expected = tokenizer(first, second, max_length=max_length, truncation="longest_first",
                       padding="max_length")
  np.testing.assert_array_equal(ids, expected["input_ids"])
  np.testing.assert_array_equal(mask, np.asarray(expected["attention_mask"], dtype=bool))
  np.testing.assert_array_equal(types, expected["token_type_ids"])
  total = sum(len(a) + len(b) for a, b in pairs)
  assert stats.dropped_units == total - (mask.sum() - 3 * len(pairs))


def test_lone_surrogates_equal_canine_tokenizer(tokenizer):
  texts = ["a\ud800", "\udfff\ud83d\ude00"]
  ids, mask, _ = codepoints.encode(texts, 8)
  expected = tokenizer(texts, max_length=8, truncation=True, padding="max_length")
  np.testing.assert_array_equal(ids, expected["input_ids"])
  assert codepoints.decode(ids) == texts


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(TEXTS.map(lambda text: text.replace("\0", "")), max_size=4))
def test_decode_inverts_encode(texts):
  # NUL has the pad id (CANINE's, as seqio.FullCodepointVocabulary's): only the mask tells them
  # apart, so decode drops it.
  ids, _, _ = codepoints.encode(texts, 32)
  assert codepoints.decode(ids) == texts


def test_too_short_for_specials():
  with pytest.raises(ValueError, match="max_length=2"):
    codepoints.encode(["a"], 2, pairs=["b"])
  with pytest.raises(ValueError, match="one per text"):
    codepoints.encode(["a", "b"], 8, pairs=["c"])
