"""Helpers shared by the text front ends: input checking and truncation counting."""

import dataclasses
from collections.abc import Sequence

import numpy as np


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


def positions_in_rows(kept: np.ndarray) -> np.ndarray:
  """For rows of kept[i] units laid end to end: each unit's index within its row."""
  row_starts = np.zeros(len(kept), dtype=np.int64)
  np.cumsum(kept[:-1], out=row_starts[1:])
  return np.arange(int(kept.sum())) - np.repeat(row_starts, kept)


def pad_rows(flat_ids: np.ndarray, kept: np.ndarray, totals: np.ndarray, max_length: int, *,
             pad_id: int, eos_id: int, add_eos: bool,
             stats: TruncationStats | None) -> tuple[np.ndarray, np.ndarray]:
  """Ragged rows (kept[i] ids each, end to end in flat_ids) -> (ids [B, max_length], mask).

  Appends eos after each row when add_eos (the caller left room for it) and records in
  `stats` that row i kept kept[i] of its totals[i] units.
  """
  batch = len(kept)
  ids = np.full((batch, max_length), pad_id, dtype=np.int32)
  ids[np.repeat(np.arange(batch), kept), positions_in_rows(kept)] = flat_ids
  lengths = kept
  if add_eos:
    ids[np.arange(batch), kept] = eos_id
    lengths = kept + 1
  mask = np.arange(max_length)[None, :] < lengths[:, None]
  if stats is not None:
    for kept_units, total_units in zip(kept.tolist(), totals.tolist()):
      stats.record(kept_units, total_units)
  return ids, mask
