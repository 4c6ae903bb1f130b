"""noembed.text.noise: golden outputs at rate 1, invariants of each perturbation, determinism."""

import collections
import json
import os
import pathlib
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noembed.text import noise

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Привет, как дела у тебя?",
             "Café naïve résumé  déjà\tvu", "", "  ", "ضَرَبَ زَيْدٌ", "👨‍👩‍👧 e\u0301"]
TEXTS = st.lists(st.text(max_size=30), max_size=4)


def _words(text):
  return text.split()


def test_registry_names_and_rates():
  assert set(noise.NOISES) == set(noise.PAPER_RATES)
  assert noise.PAPER_RATES["drop"] == 0.1 and noise.PAPER_RATES["repeat"] == 0.2


@pytest.mark.parametrize("name", sorted(noise.NOISES))
def test_rate_zero_is_identity(name):
  assert noise.NOISES[name](SENTENCES, 0.0, 3) == SENTENCES


@pytest.mark.parametrize("name", sorted(noise.NOISES))
def test_deterministic_for_a_seed(name):
  function = noise.NOISES[name]
  assert function(SENTENCES, 0.5, 7) == function(SENTENCES, 0.5, 7)
  # Text i's noise depends only on (seed, i), not on the other texts.
  assert function(SENTENCES[:2], 0.5, 7) == function(SENTENCES, 0.5, 7)[:2]


@pytest.mark.parametrize("name", ["scramble", "swap", "l33t", "drop", "add_drop_mutate",
                                  "repeat", "random_case", "uppercase"])
def test_seeds_differ(name):
  function = noise.NOISES[name]
  outputs = {tuple(function(SENTENCES, 0.5, seed)) for seed in range(5)}
  assert len(outputs) > 1


def test_golden_rate_one():
  assert noise.l33t(["abefiostvz ABZ xy"], 1.0, 0) == ["483ƒ1057\\/2 482 xy"]
  assert noise.cyrillic_to_latin(["аВьНнеоОсСЯмМ ж"], 1.0, 0) == ["aBbHHeoOcCRMM ж"]
  assert noise.latin_to_cyrillic(["aBHeoOcCM x"], 1.0, 0) == ["аВНеоОсСМ x"]
  assert noise.strip_diacritics(["Café naïve e\u0301 ضَرَبَ"], 1.0, 0) == ["Cafe naive e ضرب"]
  assert noise.antspeak(["abc def"], 1.0, 0) == [" A B C D E F "]
  assert noise.uppercase(["straße é"], 1.0, 0) == ["STRASSE É"]
  assert noise.drop(["abc"], 1.0, 0) == [""]


@settings(max_examples=100, deadline=None)
@given(texts=TEXTS, rate=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_scramble_keeps_word_ends_letters_and_whitespace(texts, rate, seed):
  for text, noisy in zip(texts, noise.scramble(texts, rate, seed)):
    assert [c for c in noisy if c.isspace()] == [c for c in text if c.isspace()]
    for word, noisy_word in zip(_words(text), _words(noisy), strict=True):
      assert collections.Counter(word) == collections.Counter(noisy_word)
      if len(word) <= 3:
        assert noisy_word == word
      else:
        assert (noisy_word[0], noisy_word[-1]) == (word[0], word[-1])


@settings(max_examples=100, deadline=None)
@given(texts=TEXTS, rate=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_swap_is_at_most_one_adjacent_transposition_per_word(texts, rate, seed):
  for text, noisy in zip(texts, noise.swap(texts, rate, seed)):
    for word, noisy_word in zip(_words(text), _words(noisy), strict=True):
      diffs = [i for i, (a, b) in enumerate(zip(word, noisy_word)) if a != b]
      assert len(word) == len(noisy_word)
      assert not diffs or (len(diffs) == 2 and diffs[1] == diffs[0] + 1
                           and word[diffs[0]] == noisy_word[diffs[1]])


@settings(max_examples=100, deadline=None)
@given(texts=TEXTS, rate=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_byt5_character_noise_invariants(texts, rate, seed):
  for text, dropped in zip(texts, noise.drop(texts, rate, seed)):
    it = iter(text)
    assert all(char in it for char in dropped)  # a subsequence of the text
  for text, repeated in zip(texts, noise.repeat(texts, rate, seed)):
    assert len(text) <= len(repeated) <= 4 * len(text)
    assert "".join(char for char, _ in _runs(repeated)) == "".join(c for c, _ in _runs(text))
  for text, mutated in zip(texts, noise.add_drop_mutate(texts, rate, seed)):
    assert set(mutated) <= set(text) and len(mutated) <= 2 * len(text)


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(st.text("abcXYZ ?", max_size=30), max_size=4), seed=st.integers(0, 2**32))
def test_random_case_only_changes_case(texts, seed):
  for text, cased in zip(texts, noise.random_case(texts, 1.0, seed)):
    assert cased.lower() == text.lower()
  long_text = "abc" * 20
  assert noise.random_case([long_text], 1.0, seed)[0] not in (long_text, long_text.upper())


def _runs(text):
  runs = []
  for char in text:
    if runs and runs[-1][0] == char:
      runs[-1][1] += 1
    else:
      runs.append([char, 1])
  return runs


def test_same_output_in_another_process():
  script = ("import json, sys; from noembed.text import noise; "
            f"texts = {ascii(SENTENCES)}; "
            "json.dump({n: f(texts, 0.5, 11) for n, f in noise.NOISES.items()}, sys.stdout)")
  env = {**os.environ, "PYTHONHASHSEED": "12345",
         "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[2])}
  result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True)
  assert json.loads(result.stdout) == {n: f(SENTENCES, 0.5, 11) for n, f in noise.NOISES.items()}


@pytest.mark.parametrize("name", sorted(noise.NOISES))
def test_bad_arguments(name):
  function = noise.NOISES[name]
  with pytest.raises(ValueError, match="rate"):
    function(["a"], 1.5, 0)
  with pytest.raises(ValueError, match="seed"):
    function(["a"], 0.5, -1)
  with pytest.raises(TypeError, match=r"texts\[1\]"):
    function(["a", b"b"], 0.5, 0)
