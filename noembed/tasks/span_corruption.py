"""ByT5's span corruption over bytes (Xue et al. 2022), host side, for the encoder-decoder model.

Reference: T5's `span_corruption` as ByT5 configures it (google-research/byt5 `tasks.py`:
noise_density 0.15, mean_noise_span_length 20): `random_spans_noise_mask`,
`noise_span_to_unique_sentinel` (inputs) and `nonnoise_span_to_unique_sentinel` (targets) of
google-research/text-to-text-transfer-transformer `t5/data/preprocessors.py`, reproduced in
numpy. A text of n bytes gets round(0.15 n) noise bytes (float32 arithmetic and the same clamps
as T5) in max(round(noise / 20), 1) spans; the span lengths are a uniformly random composition,
noise and non-noise spans alternate starting with non-noise. Inputs keep the non-noise bytes and
replace each noise span by a sentinel 258, 257, ... (noembed.text.bytes.sentinel); targets are
each sentinel followed by its noise span's bytes; both end in eos, as T5's output features do.

Differences from the reference:
- randomness: T5 draws stateless TF seeds per example from the dataset seed; here a numpy
  Generator is seeded from sha256 of (config.seed, the example's text) (seq2seq.example_seed),
  so the corruption of a text is the same in every process and after a resume. Bit-identical
  masks to TF's stateless shuffle are not possible; the counts are identical and the masks
  follow the same distribution (all masks with those counts equally likely).
- lengths: T5's `random_spans_helper` sizes the raw texts with Python rounding and without the
  mask's clamps; `span_corruption_lengths` uses the mask's own counts, so texts of pack_bytes
  bytes always fit the encoder's max_length and targets_length without trimming.

The encoder input is ByT5 byte ids, so the selected input method must read them (its front end
is noembed.inputs.byte's: `byte`, `gbst`).

Metrics (seq2seq.teacher_forced_metrics): loss is the mean NLL over every real target token
(sentinels, noise bytes, eos); accuracy and bits_per_byte count only the noise bytes (sentinel
and eos NLL excluded), so bits_per_byte is bits of the predicted text bytes per byte, as in the
mlm task.
"""

import ml_collections
import numpy as np

from noembed import inputs
from noembed.inputs import byte as byte_inputs
from noembed.tasks import common, seq2seq
from noembed.text import bytes as byte_text
from noembed.text.common import TruncationStats


def noise_counts(length: int, noise_density: float,
                 mean_noise_span_length: float) -> tuple[int, int]:
  """(noise tokens, noise spans) of T5's random_spans_noise_mask for `length` (>= 2) tokens."""
  num_noise = int(np.round(np.float32(length) * np.float32(noise_density)))
  num_noise = min(max(num_noise, 1), length - 1)
  num_spans = int(np.round(np.float32(num_noise) / np.float32(mean_noise_span_length)))
  return num_noise, max(num_spans, 1)


def _random_segmentation(num_items: int, num_segments: int,
                         rng: np.random.Generator) -> np.ndarray:
  """Lengths of a uniformly random split of num_items into num_segments non-empty parts."""
  if num_segments > num_items:
    raise ValueError(f"cannot split {num_items} tokens into {num_segments} non-empty spans; "
                     f"noise_density is too high for mean_noise_span_length")
  first_in_segment = np.zeros(num_items, np.int64)
  first_in_segment[1:] = rng.permutation(np.arange(num_items - 1) < num_segments - 1)
  return np.bincount(np.cumsum(first_in_segment), minlength=num_segments)


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
  """bool [length]: T5's noise mask of random spans (noise and non-noise alternate, non-noise
  first); lengths 0 and 1 are computed as 2 and cut, as in T5."""
  padded_length = max(length, 2)
  num_noise, num_spans = noise_counts(padded_length, noise_density, mean_noise_span_length)
  noise_lengths = _random_segmentation(num_noise, num_spans, rng)
  nonnoise_lengths = _random_segmentation(padded_length - num_noise, num_spans, rng)
  interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
  span_starts = np.cumsum(interleaved)[:-1]
  span_start_indicator = np.zeros(padded_length, np.int64)
  span_start_indicator[span_starts] = 1
  is_noise = np.cumsum(span_start_indicator) % 2 == 1
  return is_noise[:length]


def _span_to_unique_sentinel(tokens: np.ndarray,
                             replaced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Each run of `replaced` tokens becomes one sentinel (258, 257, ...): (tokens, is_kept)."""
  previous = np.concatenate([[False], replaced[:-1]])
  first = replaced & ~previous
  sentinels = byte_text.sentinel(0) + 1 - np.cumsum(first)
  out = np.where(first, sentinels, tokens)
  keep = ~(replaced & previous)
  return out[keep].astype(np.int32), ~first[keep]


def corrupt(tokens: np.ndarray, noise_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
  """(inputs, targets, target_is_byte) without eos: T5's noise_span_to_unique_sentinel and
  nonnoise_span_to_unique_sentinel of one example's byte ids."""
  inputs_ids, _ = _span_to_unique_sentinel(tokens, noise_mask)
  targets_ids, target_is_byte = _span_to_unique_sentinel(tokens, ~noise_mask)
  return inputs_ids, targets_ids, target_is_byte


def span_corruption_lengths(num_bytes: int, noise_density: float,
                            mean_noise_span_length: float) -> tuple[int, int]:
  """(inputs length, targets length), eos included, of a text of num_bytes bytes."""
  if num_bytes < 2:
    return num_bytes + 1, 2 if num_bytes else 1
  num_noise, num_spans = noise_counts(num_bytes, noise_density, mean_noise_span_length)
  return num_bytes - num_noise + num_spans + 1, num_noise + num_spans + 1


def max_text_bytes(inputs_length: int, noise_density: float,
                   mean_noise_span_length: float) -> int:
  """The most bytes whose corrupted inputs fit inputs_length (T5's random_spans_helper)."""
  num_bytes = inputs_length - 1
  while span_corruption_lengths(num_bytes + 1, noise_density,
                                mean_noise_span_length)[0] <= inputs_length:
    num_bytes += 1
  return num_bytes


class SpanCorruption:
  """config.task: name "span_corruption", noise_density, mean_noise_span_length, pack_bytes,
  targets_length (0 = derived from the encoder's max_length, as T5's random_spans_helper)."""

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "name": "span_corruption",
        "noise_density": 0.15,
        "mean_noise_span_length": 20.0,
        "pack_bytes": 0,        # texts packed to this many bytes; 0 = the most that fit
        "targets_length": 0,    # 0 = the targets length of a pack_bytes text
    })

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    method, self.method_config = inputs.selected(config.embedder)
    if method.encode is not byte_inputs.encode:
      byte_methods = [name for name in inputs.names()
                      if inputs.get(name).encode is byte_inputs.encode]
      raise ValueError(f"task span_corruption feeds ByT5 byte ids to the encoder; embedder "
                       f"{method.name!r} does not read them (use one of "
                       f"{', '.join(byte_methods)})")
    task = config.task
    if not 0.0 < task.noise_density < 1.0:
      raise ValueError(f"config.task.noise_density must be in (0, 1), got {task.noise_density}")
    if task.mean_noise_span_length < 1.0:
      raise ValueError(f"config.task.mean_noise_span_length must be >= 1, got "
                       f"{task.mean_noise_span_length}")
    self.density, self.mean_span = task.noise_density, task.mean_noise_span_length
    self.inputs_length = self.method_config.max_length
    self.pack_bytes = task.pack_bytes or max_text_bytes(self.inputs_length, self.density,
                                                        self.mean_span)
    inputs_needed, targets_needed = span_corruption_lengths(self.pack_bytes, self.density,
                                                            self.mean_span)
    if inputs_needed > self.inputs_length:
      raise ValueError(f"config.task.pack_bytes={self.pack_bytes} corrupts to {inputs_needed} "
                       f"input ids, more than the embedder's max_length={self.inputs_length}; "
                       f"use pack_bytes=0 to derive it")
    self.targets_length = task.targets_length or targets_needed
    if targets_needed > self.targets_length:
      raise ValueError(f"config.task.targets_length={self.targets_length} is shorter than the "
                       f"{targets_needed} target ids of a {self.pack_bytes}-byte text; use 0 "
                       f"to derive it")
    max_spans = noise_counts(max(self.pack_bytes, 2), self.density, self.mean_span)[1]
    byte_text.sentinel(max_spans - 1)  # raises ValueError past ByT5's 125 sentinels
    self.head = seq2seq.TARGETS_HEAD_SPEC
    self.data = common.TaskData(pack_bytes=self.pack_bytes)

  def corrupt_text(self, text: str, ids: np.ndarray):
    """(inputs, targets, target_is_byte), eos added, of one text's (truncated) byte ids."""
    rng = np.random.default_rng(seq2seq.example_seed(text, self.config.seed, "span_corruption"))
    noise_mask = random_spans_noise_mask(ids.size, self.density, self.mean_span, rng)
    inputs_ids, targets_ids, target_is_byte = corrupt(ids, noise_mask)
    if self.method_config.add_eos:
      inputs_ids = np.append(inputs_ids, byte_text.EOS_ID)
    return (inputs_ids, np.append(targets_ids, byte_text.EOS_ID),
            np.append(target_is_byte, False))

  def batch_fn(self, examples: list[dict]):
    texts = [example["text"] for example in examples]
    stats = TruncationStats()
    ids, mask = byte_text.encode(texts, self.pack_bytes, add_eos=False, stats=stats)
    batch_size = len(texts)
    encoder_ids = np.zeros((batch_size, self.inputs_length), np.int32)
    targets = np.zeros((batch_size, self.targets_length), np.int32)
    target_is_byte = np.zeros((batch_size, self.targets_length), bool)
    for row, text in enumerate(texts):
      inputs_row, targets_row, is_byte_row = self.corrupt_text(text, ids[row, mask[row]])
      encoder_ids[row, :inputs_row.size] = inputs_row
      targets[row, :targets_row.size] = targets_row
      target_is_byte[row, :is_byte_row.size] = is_byte_row
    return {
        "ids": encoder_ids,
        "mask": encoder_ids != byte_text.PAD_ID,
        "targets": targets,
        "targets_mask": targets != byte_text.PAD_ID,
        "target_is_byte": target_is_byte,
        "num_bytes": byte_text.num_bytes(texts),
        common.HOST_PREFIX + "truncated_texts": np.asarray(stats.truncated_texts, np.int64),
        common.HOST_PREFIX + "dropped_units": np.asarray(stats.dropped_units, np.int64),
    }

  def loss(self, apply_fn, variables, batch, rng, train: bool = True):
    return seq2seq.teacher_forced_loss(apply_fn, variables, batch, rng, train)

  def eval_metrics(self, apply_fn, variables, batch, rng):
    return seq2seq.teacher_forced_loss(apply_fn, variables, batch, rng, False)[1]
