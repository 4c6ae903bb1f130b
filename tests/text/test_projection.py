"""noembed.text.projection against seq_flow_lite vectors, the per-token loop and the op's rules."""

import concurrent.futures
import json
import pathlib

import hypothesis
import hypothesis.strategies as st
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bench.projection_loop import project_loop
from noembed.nn import projection_codes
from noembed.text import murmur, projection, projection_words
from noembed.text.common import TruncationStats

VECTORS = json.loads((pathlib.Path(__file__).parents[3] / "shared" / "testdata"
                      / "projection_vectors.json").read_text())["vectors"]
SIGNS = {"+": 1, "-": -1, "0": 0}


def features_of(text, feature_size=512, **options):
  options = {"add_eos": False, **options}
  features, mask = projection.project([text], feature_size, 4, **options)
  return features[0][mask[0]]


def vector_features(vector):
  return np.array([SIGNS[sign] for sign in vector["features_512"]], np.int8)


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["token"] for vector in VECTORS])
def test_hash_codes_match_seq_flow_lite(vector):
  codes = murmur.hash_codes([bytes.fromhex(vector["utf8_hex"])], 512)[0]
  expected = [int(code, 16) for code in vector["codes_hex"]]
  assert codes[:len(expected)].tolist() == expected


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["token"] for vector in VECTORS])
def test_512_features_match_seq_flow_lite(vector):
  token = bytes.fromhex(vector["utf8_hex"]).decode("utf-8")
  np.testing.assert_array_equal(features_of(token, lowercase=False)[0], vector_features(vector))


def test_hello_documented_vector():
  codes = murmur.hash_codes([b"hello"], 128)[0]
  assert (int(codes[0]), int(codes[1])) == (0x1E68D17C457BF117, 0x1AEC33D7DD3E8013)
  assert features_of("hello", 128)[0, :16].tolist() == [0, 1, 1, 0, 1, 0, 0, 0, 0, -1, 0, 1, 1,
                                                         1, 0, 1]


def test_special_tokens_are_the_ops():
  by_token = {vector["token"]: vector_features(vector) for vector in VECTORS}
  features, mask = projection.project(["hello"], 512, 4, add_bos=True, add_eos=True)
  assert mask[0].tolist() == [True, True, True, False]
  np.testing.assert_array_equal(features[0, 0], by_token["<BOS>"])
  np.testing.assert_array_equal(features[0, 1], by_token["hello"])
  np.testing.assert_array_equal(features[0, 2], by_token["<EOS>"])
  assert not features[0, 3].any()
  # A token whose every rune is filtered out is the empty word, hashed as "<null>".
  np.testing.assert_array_equal(features_of("xyz", vocabulary="abc")[0], by_token["<null>"])
  np.testing.assert_array_equal(features_of("\ufffd")[0], by_token["<null>"])


def test_split_modes():
  assert len(features_of("  a  b c ")) == 3
  assert len(features_of("a\tb\nc")) == 1   # only U+0020 separates
  codepoints = features_of("ab c", split_on="codepoint")
  assert len(codepoints) == 4
  np.testing.assert_array_equal(codepoints[0], features_of("a")[0])
  np.testing.assert_array_equal(codepoints[2], features_of(" ", split_on="codepoint")[0])


def test_max_splits_follows_the_op():
  def count(text, max_splits, split_on="space"):
    _, mask = projection.project([text], 64, 16, max_splits=max_splits, split_on=split_on,
                                 add_eos=False)
    return mask.sum()
  assert count("a b c d", -1) == 4
  assert count("a b c d", 0) == 4      # 0 is "no limit" for the op (size_t arithmetic)
  assert count("a b c d", 1) == 1
  assert count("a b c d", 2) == 2
  assert count("a  b c", 2) == 1       # an empty word still uses up a split step
  assert count("abcdef", 3, "codepoint") == 3
  np.testing.assert_array_equal(features_of("a b c d", max_splits=2)[1], features_of("b")[0])


def test_lowercase_and_vocabulary():
  np.testing.assert_array_equal(features_of("HeLLo"), features_of("hello"))
  assert not np.array_equal(features_of("HeLLo", lowercase=False), features_of("hello"))
  np.testing.assert_array_equal(features_of("İΣ"), features_of("iσ"))  # simple mapping
  np.testing.assert_array_equal(features_of("hXeYlZlo", vocabulary="helo"),
                                features_of("hello"))
  # Upper-case runes in the vocabulary are ignored, as InitializeVocabulary does.
  np.testing.assert_array_equal(features_of("hellO", vocabulary="helO"), features_of("hell"))


def test_capitalisation_features_golden():
  features, mask = projection.project(["Hello HELLO hello H1"], 64, 8, add_eos=True,
                                      add_first_cap_feature=1.0, add_all_caps_feature=1.0)
  assert features[0, :5, 64 - 3].tolist() == [1, -1, -1, 1, -1]
  assert features[0, :5, 64 - 4].tolist() == [-1, 1, -1, -1, -1]
  assert not features[0, ~mask[0]].any()


def test_novelty_and_doc_size_golden():
  features, _ = projection.project(["a a a b"], 64, 8, word_novelty_bits=1, doc_size_levels=4)
  assert features.dtype == np.float32
  assert features[0, :5, 63].tolist() == [-1.0, 0.0, 1.0, -1.0, -1.0]   # EOS seen once
  assert features[0, :5, 62].tolist() == [0.0] * 5       # log2(4) / 4 * 2 - 1
  empty, _ = projection.project([""], 64, 4, doc_size_levels=4)
  assert empty[0, 0, 62] == -1.0                          # empty document counted as one token


def test_distortion_is_seeded_and_changes_tokens():
  words = ["abcdef"] * 300
  same = projection.distort(words, np.random.default_rng(5), 1.0)
  assert same == projection.distort(words, np.random.default_rng(5), 1.0)
  assert projection.distort(words, np.random.default_rng(5), 0.0) == words
  assert {len(word) for word in same} <= {5, 6, 7}
  assert sum(word != "abcdef" for word in same) > 0.6 * len(words)
  assert all(set(word) <= set("abcdef") for word in same)   # re-inserted runes are seen ones
  text = [" ".join(["internationalization"] * 50)]
  first = projection.project(text, 64, 64, distortion_probability=1.0, distortion_seed=1)[0]
  again = projection.project(text, 64, 64, distortion_probability=1.0, distortion_seed=1)[0]
  other = projection.project(text, 64, 64, distortion_probability=1.0, distortion_seed=2)[0]
  clean = projection.project(text, 64, 64)[0]
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
  changed = (first != clean).any(-1)[0, :50]
  assert changed.mean() > 0.6


@pytest.mark.parametrize("feature_size", [64, 512])
def test_packed_unpacks_to_the_features(feature_size):
  texts = ["Hello wOrld ÆØÅ 😀", "", "a " * 40, "İSTANBUL Σίσυφος"]
  options = dict(add_bos=True, add_first_cap_feature=0.5, add_all_caps_feature=1.0,
                 distortion_probability=0.3, distortion_seed=7)
  features, mask = projection.project(texts, feature_size, 16, **options)
  codes, packed_mask = projection.project_packed(texts, feature_size, 16, **options)
  assert codes.dtype == np.uint32 and codes.shape == (4, 16, feature_size // 16)
  np.testing.assert_array_equal(packed_mask, mask)
  unpacked = projection_codes.unpack(jnp.asarray(codes), feature_size)
  np.testing.assert_array_equal(np.asarray(unpacked), features)
  assert not codes[~mask].any()


ALPHABET = list("aAbBzZ  -.!0") + list("éÉßİıΣσςЖжあ日😀👍🏽") + ["\x00", "\x07", "\ufffd",
                                                              "\ud800", "\u200d", "Ꭰ"]


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    texts=st.lists(st.text(st.sampled_from(ALPHABET), max_size=40), min_size=1, max_size=4),
    split_on=st.sampled_from(projection.SPLIT_MODES), lowercase=st.booleans(),
    add_bos=st.booleans(), add_eos=st.booleans(), max_splits=st.sampled_from([-1, 0, 1, 3]),
    vocabulary=st.sampled_from(["", "abé ж😀"]), distortion=st.sampled_from([0.0, 0.5, 1.0]),
    seed=st.integers(0, 3), caps=st.sampled_from([0.0, 0.5, 1.0]),
    novelty=st.sampled_from([0, 2]), doc_size=st.sampled_from([0, 3]))
def test_vectorised_matches_the_loop(texts, split_on, lowercase, add_bos, add_eos, max_splits,
                                     vocabulary, distortion, seed, caps, novelty, doc_size):
  options = dict(split_on=split_on, lowercase=lowercase, add_bos=add_bos, add_eos=add_eos,
                 max_splits=max_splits, vocabulary=vocabulary,
                 distortion_probability=distortion, distortion_seed=seed,
                 add_first_cap_feature=caps, add_all_caps_feature=caps,
                 word_novelty_bits=novelty, doc_size_levels=doc_size)
  fast_stats, loop_stats = TruncationStats(), TruncationStats()
  features, mask = projection.project(texts, 64, 12, stats=fast_stats, **options)
  expected, expected_mask = project_loop(texts, 64, 12, stats=loop_stats, **options)
  np.testing.assert_array_equal(mask, expected_mask)
  assert features.dtype == expected.dtype
  np.testing.assert_array_equal(features, expected)
  assert fast_stats == loop_stats


def test_long_tokens_hash_like_the_loop():
  tokens = ["x" * 1000, "é" * 777, "ab" * 9, "q"]
  features = projection.project([" ".join(tokens)], 64, 8)[0]
  np.testing.assert_array_equal(features, project_loop([" ".join(tokens)], 64, 8)[0])


def test_odd_text_never_raises_and_truncation_is_counted():
  stats = TruncationStats()
  texts = ["", "\x00", "\ud83d", "\ud83d\ude00", "\x01\x1b[0m", "👩‍👩‍👧‍👦", "a" * 10_000_000,
           "w " * 100]
  features, mask = projection.project(texts, 64, 8, stats=stats)
  assert features.shape == (8, 8, 64) and mask.sum(1).tolist() == [1, 2, 2, 2, 2, 2, 2, 8]
  assert (stats.texts, stats.truncated_texts, stats.dropped_units) == (8, 1, 93)
  # A lone surrogate becomes U+FFFD, which the op's lower-casing drops: the "<null>" word.
  np.testing.assert_array_equal(features[2, 0], features_of("\ufffd", 64)[0])


def test_bad_input():
  with pytest.raises(TypeError, match=r"texts\[1\] is bytes"):
    projection.project(["ok", b"bytes"])
  with pytest.raises(TypeError, match="single str"):
    projection.project("text")
  with pytest.raises(ValueError, match="split_on"):
    projection.project(["a"], split_on="word")
  with pytest.raises(ValueError, match="feature_size"):
    projection.project(["a"], feature_size=0)
  with pytest.raises(ValueError, match="multiple of 16"):
    projection.project_packed(["a"], feature_size=40)
  with pytest.raises(ValueError, match="ternary"):
    projection.project_packed(["a"], feature_size=64, doc_size_levels=2)
  with pytest.raises(ValueError, match="max_tokens=2"):
    projection.project(["a"], max_tokens=2, add_bos=True, add_eos=True)
  with pytest.raises(TypeError):
    projection.project(["a"], no_such_option=1)


WHITESPACE_TEXTS = ["a\u00a0b c", "x\u3000y\u2028z w", "tab\there  new\nline", "\x1c\x1d \x1e\x1f",
                    "  ", "Ünïcödé  wörds\u0085end", "a" + " " * 5 + "b"]


def test_space_split_shortcut_keeps_every_separator_but_u0020():
  # The front end uses str.split() on printable texts: that is only exact if every other
  # character str.split() separates on is non-printable.
  separators = [chr(code) for code in range(0x110000) if chr(code).isspace()]
  assert [char for char in separators if char.isprintable()] == [" "]
  features, mask = projection.project(WHITESPACE_TEXTS, 64, 8)
  expected, expected_mask = project_loop(WHITESPACE_TEXTS, 64, 8)
  np.testing.assert_array_equal(mask, expected_mask)
  np.testing.assert_array_equal(features, expected)


@pytest.fixture
def tiny_word_tables(monkeypatch):
  """Word tables of 8 rows, so that calls start them over and grow them past capacity."""
  monkeypatch.setattr(projection_words, "_TABLE_CAPACITY", 8)
  projection.clear_cache()
  yield
  projection.clear_cache()


CACHE_TEXTS = ["the cat sat on the mat", "The Cat SAT", "", "a b c d e f g h i j k l", "the cat",
               "Σίσυφος İstanbul \ud800 x\ufffdy", "mat mat mat", "x" * 65 + " " + "x" * 65]


def test_results_do_not_depend_on_the_word_cache(tiny_word_tables):
  expected = [project_loop([text], 64, 16) for text in CACHE_TEXTS]
  other = dict(lowercase=False, add_bos=True)
  expected_other = [project_loop([text], 128, 16, **other)[0] for text in CACHE_TEXTS]
  for _ in range(2):   # the second pass finds (some of) the words cached
    for text, (features, mask), features_other in zip(CACHE_TEXTS, expected, expected_other):
      got, got_mask = projection.project([text], 64, 16)
      np.testing.assert_array_equal(got_mask, mask)
      np.testing.assert_array_equal(got, features)
      codes, _ = projection.project_packed([text], 64, 16)
      np.testing.assert_array_equal(np.asarray(projection_codes.unpack(jnp.asarray(codes), 64)),
                                    features)
      # Other options in between use their own table.
      np.testing.assert_array_equal(projection.project([text], 128, 16, **other)[0],
                                    features_other)
  # Bounded: a call that finds the table full starts it over.
  most_words = max(len(set(text.split())) for text in CACHE_TEXTS)
  assert projection_words.word_table(64, True, "").rows <= 8 + most_words + 3
  whole, whole_mask = projection.project(CACHE_TEXTS, 64, 16)   # one call past capacity
  np.testing.assert_array_equal(whole_mask, np.concatenate([mask for _, mask in expected]))
  np.testing.assert_array_equal(whole, np.concatenate([features for features, _ in expected]))


def test_word_cache_starts_over_past_its_key_budget(monkeypatch):
  monkeypatch.setattr(projection_words, "_TABLE_KEY_CHARS", 16)
  projection.clear_cache()
  for text in ["x" * 40 + " y", "x" * 40, "short"]:   # each call finds the table full
    np.testing.assert_array_equal(projection.project([text], 64, 8)[0],
                                  project_loop([text], 64, 8)[0])
  table = projection_words.word_table(64, True, "")
  assert list(table.token_rows) == ["short"]
  assert table.key_chars == len("short" + projection.BOS_TOKEN + projection.EOS_TOKEN)
  projection.clear_cache()


def test_concurrent_calls_match_sequential_ones(tiny_word_tables):
  texts = [f"w{index % 11} shared x{index % 5} {'long' * (index % 4)}" for index in range(40)]
  expected = project_loop(texts, 64, 8)[0]
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    results = list(pool.map(lambda text: projection.project([text], 64, 8)[0][0], texts * 3))
  np.testing.assert_array_equal(np.stack(results), np.concatenate([expected] * 3))
