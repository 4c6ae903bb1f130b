"""Helpers shared by the text front ends: input checking and truncation counting."""

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass
class TruncationStats:
  """Counts what a front end cut off; pass one in to accumulate over calls.

  texts: texts seen; truncated_texts: texts that did not fit; dropped_units: units (bytes,
  code points, tokens, slices, pieces) cut off in total.
  """

  texts: int = 0
  truncated_texts: int = 0
  dropped_units: int = 0

  def record(self, kept: int, total: int) -> None:
    self.texts += 1
    if total > kept:
      self.truncated_texts += 1
      self.dropped_units += total - kept


def check_texts(texts: Sequence[str]) -> list[str]:
  """Returns `texts` as a list, raising TypeError naming the first item that is not a str."""
  if isinstance(texts, str):
    raise TypeError("expected a sequence of str, got a single str; wrap it in a list")
  texts = list(texts)
  for index, text in enumerate(texts):
    if not isinstance(text, str):
      raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str: {text!r:.80}")
  return texts


def check_positive(name: str, value: int) -> int:
  """Raises ValueError naming `name` unless `value` is a positive int."""
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(f"{name} must be a positive int, got {value!r}")
  return value
