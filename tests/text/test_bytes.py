"""noembed.text.bytes against transformers.ByT5Tokenizer (built directly: it needs no files)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noembed.text import bytes as byte_text
from noembed.text.common import TruncationStats

# Any code point but surrogates (ByT5Tokenizer raises on those), weighted towards 2-4 byte ones.
TEXTS = st.text(st.one_of(st.characters(max_codepoint=0x7F),
                          st.characters(min_codepoint=0x80, exclude_categories=("Cs",))),
                max_size=40)
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tokenizer():
  transformers = pytest.importorskip("transformers")
  return transformers.ByT5Tokenizer()


def _real(ids, mask):
  return [row[keep].tolist() for row, keep in zip(ids, mask)]


def test_golden_ids():
  ids, mask = byte_text.encode(["hé", "", "😀"], max_length=6)
  np.testing.assert_array_equal(ids, [[107, 198, 172, 1, 0, 0],
                                      [1, 0, 0, 0, 0, 0],
                                      [243, 162, 155, 131, 1, 0]])
  np.testing.assert_array_equal(mask.sum(1), [4, 1, 5])
  assert ids.dtype == np.int32 and mask.dtype == bool


def test_constants_and_sentinels():
  assert (byte_text.PAD_ID, byte_text.EOS_ID, byte_text.UNK_ID) == (0, 1, 2)
  assert byte_text.OFFSET == 3 and byte_text.VOCAB_SIZE == 259
  assert [byte_text.sentinel(k) for k in (0, 1, 124)] == [258, 257, 134]
  with pytest.raises(ValueError, match="125"):
    byte_text.sentinel(125)


@SETTINGS
@given(texts=st.lists(TEXTS, min_size=1, max_size=4), add_eos=st.booleans())
def test_ids_equal_byt5_tokenizer(tokenizer, texts, add_eos):
  ids, mask = byte_text.encode(texts, max_length=200, add_eos=add_eos)
  expected = [tokenizer(text, add_special_tokens=add_eos)["input_ids"] for text in texts]
  assert _real(ids, mask) == expected
  assert not ids[~mask].any()


@SETTINGS
@given(texts=st.lists(TEXTS, min_size=1, max_size=4), max_length=st.integers(1, 12),
       add_eos=st.booleans())
def test_split_characters_truncation_equals_byt5_tokenizer(tokenizer, texts, max_length,
                                                           add_eos):
  ids, mask = byte_text.encode(texts, max_length, add_eos=add_eos, split_characters=True)
  expected = tokenizer(texts, max_length=max_length, truncation=True, padding="max_length",
                       add_special_tokens=add_eos)
  np.testing.assert_array_equal(ids, expected["input_ids"])
  np.testing.assert_array_equal(mask, np.asarray(expected["attention_mask"], dtype=bool))


def _longest_fitting_prefix(text: str, budget: int) -> str:
  used = 0
  for index, char in enumerate(text):
    used += len(char.encode("utf-8"))
    if used > budget:
      return text[:index]
  return text


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, max_length=st.integers(1, 16), add_eos=st.booleans())
def test_truncation_keeps_whole_characters(text, max_length, add_eos):
  stats = TruncationStats()
  ids, mask = byte_text.encode([text], max_length, add_eos=add_eos, stats=stats)
  expected = _longest_fitting_prefix(text, max_length - add_eos).encode("utf-8")
  real = ids[0][mask[0]].tolist()
  assert real == [b + byte_text.OFFSET for b in expected] + [byte_text.EOS_ID] * add_eos
  total = len(text.encode("utf-8"))
  assert (stats.texts, stats.truncated_texts, stats.dropped_units) == (
      1, int(total > len(expected)), total - len(expected))


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(TEXTS, max_size=5), add_eos=st.booleans())
def test_decode_inverts_encode(texts, add_eos):
  ids, _ = byte_text.encode(texts, max_length=170, add_eos=add_eos)
  assert byte_text.decode(ids) == texts
  np.testing.assert_array_equal(byte_text.num_bytes(texts),
                                [len(text.encode("utf-8")) for text in texts])


def test_decode_stops_at_eos_and_drops_specials_and_sentinels():
  ids = [[107, byte_text.sentinel(0), 108, 1, 109, 0], [2, 300, 107, 0, 0, 0]]
  assert byte_text.decode(ids) == ["hi", "h"]


def test_lone_surrogates_become_replacement_character():
  ids, _ = byte_text.encode(["a\ud800b", "\ud83d\ude00", "\udfff"], max_length=8)
  expected, _ = byte_text.encode(["a\ufffdb", "😀", "\ufffd"], max_length=8)
  np.testing.assert_array_equal(ids, expected)
  assert byte_text.num_bytes(["\ud800"]).tolist() == [3]


def test_special_token_strings_are_plain_bytes():
  ids, mask = byte_text.encode(["</s><pad>"], max_length=12, add_eos=False)
  assert ids[0][mask[0]].tolist() == [b + 3 for b in b"</s><pad>"]


def test_stats_accumulate_over_calls():
  stats = TruncationStats()
  byte_text.encode(["abcdef", "ab"], max_length=4, stats=stats)
  byte_text.encode(["ééé"], max_length=4, stats=stats)  # 6 bytes, budget 3 -> keeps "é"
  assert (stats.texts, stats.truncated_texts, stats.dropped_units) == (3, 2, 3 + 4)
