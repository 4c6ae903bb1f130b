"""Synthetic noise for robustness evaluations: each function is (texts, rate, seed) -> texts.

Sources, named again per function:
- visrep (Salesky et al. 2021, "Robust open-vocabulary translation from visual text
  representations", esalesky/visrep scripts/visual_text/*.py): scramble, swap, l33t,
  Cyrillic->Latin confusables; plus Latin->Cyrillic (the inverse of visrep's table) and diacritic
  removal (visrep's diacritization.py instead *adds* Arabic diacritics with camel_tools' MLE
  disambiguator, a trained model we do not ship; we strip marks as BERT's `_run_strip_accents`).
- ByT5 (Xue et al. 2022, §6 "synthetic noise"): drop, add_drop_mutate, repeat, antspeak,
  uppercase, random_case.

Randomness: text i is perturbed with numpy's Generator seeded by (seed, i), so a text's noise
depends only on the seed and its position, never on Python's salted hash or on other texts.
visrep's scripts split lines on whitespace and rejoin with single spaces; here words are the
same whitespace-separated runs but the original whitespace is kept.
`PAPER_RATES` holds the rate each source used (visrep's script default, ByT5's paper values).
"""

import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from noembed.text.common import check_texts

_WHITESPACE = re.compile(r"(\s+)")

# esalesky/visrep scripts/visual_text/l33t.py, keyed by lowercase letter.
_L33T = {"a": "4", "b": "8", "e": "3", "f": "ƒ", "i": "1", "o": "0", "s": "5", "t": "7",
         "v": "\\/", "z": "2"}
# esalesky/visrep scripts/visual_text/cyrillic_noise.py (cyr2rom).
_CYRILLIC_TO_LATIN = {"а": "a", "В": "B", "ь": "b", "Н": "H", "н": "H", "е": "e", "о": "o",
                      "О": "O", "с": "c", "С": "C", "Я": "R", "м": "M", "М": "M"}
# The inverse of the table above where a Latin letter has one look-alike of the same case.
_LATIN_TO_CYRILLIC = {"a": "а", "B": "В", "H": "Н", "e": "е", "o": "о", "O": "О", "c": "с",
                      "C": "С", "M": "М"}


def _check_rate(rate: float) -> float:
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
    raise ValueError(f"rate must be a probability in [0, 1], got {rate!r}")
  return float(rate)


def _check_seed(seed: int) -> int:
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative int, got {seed!r}")
  return int(seed)


def _per_text(perturb: Callable[[str, float, np.random.Generator], str]):
  """Lifts perturb(text, rate, rng) to (texts, rate, seed) -> texts with per-text generators."""

  def noise(texts: Sequence[str], rate: float, seed: int) -> list[str]:
    texts = check_texts(texts)
    rate, seed = _check_rate(rate), _check_seed(seed)
    return [perturb(text, rate, np.random.default_rng((seed, index)))
            for index, text in enumerate(texts)]

  noise.__name__ = perturb.__name__
  noise.__doc__ = perturb.__doc__
  return noise


def _map_words(text: str, rate: float, rng: np.random.Generator,
               change: Callable[[str, np.random.Generator], str]) -> str:
  """Applies `change` to each whitespace-separated word with probability `rate`."""
  parts = _WHITESPACE.split(text)
  words = parts[0::2]
  chosen = rng.random(len(words)) < rate
  for index in np.flatnonzero(chosen):
    parts[2 * index] = change(words[index], rng)
  return "".join(parts)


def _map_characters(text: str, rate: float, rng: np.random.Generator,
                    table: dict[str, str], key: Callable[[str], str] = str) -> str:
  """Replaces each character found in `table` with probability `rate` (one draw per char)."""
  chosen = rng.random(len(text)) < rate
  return "".join(table.get(key(char), char) if pick else char
                 for char, pick in zip(text, chosen.tolist()))


@_per_text
def scramble(text: str, rate: float, rng: np.random.Generator) -> str:
  """visrep cmabrigde.py: shuffles the interior of each word of 4+ characters with prob rate."""

  def shuffle_interior(word: str, rng: np.random.Generator) -> str:
    if len(word) <= 3:
      return word
    interior = list(word[1:-1])
    return word[0] + "".join(interior[i] for i in rng.permutation(len(interior))) + word[-1]

  return _map_words(text, rate, rng, shuffle_interior)


@_per_text
def swap(text: str, rate: float, rng: np.random.Generator) -> str:
  """visrep swap.py: swaps one random pair of adjacent characters in a word with prob rate."""

  def swap_adjacent(word: str, rng: np.random.Generator) -> str:
    if len(word) <= 1:
      return word
    left = int(rng.integers(len(word) - 1))
    return word[:left] + word[left + 1] + word[left] + word[left + 2:]

  return _map_words(text, rate, rng, swap_adjacent)


@_per_text
def l33t(text: str, rate: float, rng: np.random.Generator) -> str:
  """visrep l33t.py: each letter in a-b-e-f-i-o-s-t-v-z (any case) becomes l33t with prob rate."""
  return _map_characters(text, rate, rng, _L33T, key=str.lower)


@_per_text
def cyrillic_to_latin(text: str, rate: float, rng: np.random.Generator) -> str:
  """visrep cyrillic_noise.py: each Cyrillic look-alike becomes its Latin letter with prob rate."""
  return _map_characters(text, rate, rng, _CYRILLIC_TO_LATIN)


@_per_text
def latin_to_cyrillic(text: str, rate: float, rng: np.random.Generator) -> str:
  """Inverse of visrep's table: each Latin letter with a Cyrillic homoglyph swaps with prob rate."""
  return _map_characters(text, rate, rng, _LATIN_TO_CYRILLIC)


@_per_text
def strip_diacritics(text: str, rate: float, rng: np.random.Generator) -> str:
  """Removes the nonspacing marks (category Mn after NFD, as BERT's _run_strip_accents) of each
  word with prob rate; the word is recomposed (NFC)."""

  def strip(word: str, rng: np.random.Generator) -> str:
    del rng
    decomposed = unicodedata.normalize("NFD", word)
    kept = "".join(char for char in decomposed if unicodedata.category(char) != "Mn")
    return unicodedata.normalize("NFC", kept)

  return _map_words(text, rate, rng, strip)


@_per_text
def drop(text: str, rate: float, rng: np.random.Generator) -> str:
  """ByT5 §6 Drop: each character (code point) is dropped with prob rate (paper: 0.1)."""
  chosen = rng.random(len(text)) < rate
  return "".join(char for char, pick in zip(text, chosen.tolist()) if not pick)


@_per_text
def add_drop_mutate(text: str, rate: float, rng: np.random.Generator) -> str:
  """ByT5 §6 Add/Drop/Mutate: at each position with prob rate (paper: 0.1) one of, equally
  likely, insert a random character of the text after it, drop it, or replace it by a random
  character of the text."""
  chosen = rng.random(len(text)) < rate
  actions = rng.integers(3, size=len(text))
  donors = rng.integers(max(len(text), 1), size=len(text))
  out = []
  for char, pick, action, donor in zip(text, chosen.tolist(), actions.tolist(), donors.tolist()):
    if not pick:
      out.append(char)
    elif action == 0:
      out.append(char + text[donor])
    elif action == 2:
      out.append(text[donor])
  return "".join(out)


@_per_text
def repeat(text: str, rate: float, rng: np.random.Generator) -> str:
  """ByT5 §6 Repetitions: each character is picked with prob rate (paper: 0.2) and then
  repeated 1-3 more times (equally likely) right after itself."""
  chosen = rng.random(len(text)) < rate
  copies = rng.integers(1, 4, size=len(text))
  return "".join(char * (1 + count) if pick else char
                 for char, pick, count in zip(text, chosen.tolist(), copies.tolist()))


@_per_text
def antspeak(text: str, rate: float, rng: np.random.Generator) -> str:
  """ByT5 §6 Antspeak: with prob rate (paper: 1, every text) each character is capitalised and
  padded with spaces: "abc def" -> " A B C D E F " (whitespace is not padded)."""
  if rng.random() >= rate:
    return text
  return " " + "".join(char.upper() + " " for char in text if not char.isspace())


@_per_text
def uppercase(text: str, rate: float, rng: np.random.Generator) -> str:
  """ByT5 §6 Uppercase: each character is uppercased with prob rate (paper: 1)."""
  chosen = rng.random(len(text)) < rate
  return "".join(char.upper() if pick else char for char, pick in zip(text, chosen.tolist()))


@_per_text
def random_case(text: str, rate: float, rng: np.random.Generator) -> str:
  """ByT5 §6 Random case: with prob rate (paper: 1) a character is set to upper or lower
  case, equally likely."""
  chosen = rng.random(len(text)) < rate
  upper = rng.random(len(text)) < 0.5
  return "".join((char.upper() if up else char.lower()) if pick else char
                 for char, pick, up in zip(text, chosen.tolist(), upper.tolist()))


NOISES: dict[str, Callable[[Sequence[str], float, int], list[str]]] = {
    "scramble": scramble,
    "swap": swap,
    "l33t": l33t,
    "cyrillic_to_latin": cyrillic_to_latin,
    "latin_to_cyrillic": latin_to_cyrillic,
    "strip_diacritics": strip_diacritics,
    "drop": drop,
    "add_drop_mutate": add_drop_mutate,
    "repeat": repeat,
    "antspeak": antspeak,
    "uppercase": uppercase,
    "random_case": random_case,
}

PAPER_RATES: dict[str, float] = {
    "scramble": 0.1, "swap": 0.1, "l33t": 0.1, "cyrillic_to_latin": 0.1,
    "latin_to_cyrillic": 0.1, "strip_diacritics": 0.1,
    "drop": 0.1, "add_drop_mutate": 0.1, "repeat": 0.2, "antspeak": 1.0, "uppercase": 1.0,
    "random_case": 1.0,
}
