"""Text-to-text tasks for the encoder-decoder model: teacher-forced loss, greedy-decoding eval.

The source goes through the config-selected input method's front end (any of them), the target
is ByT5 byte ids (noembed.text.bytes) ending in eos. On the bundled corpus the pairs are
denoising: the source is the text with noembed.text.noise applied (config.task.noise at
config.task.noise_rate), the target the clean text. Noise randomness is seeded from a hash of
the example text and config.seed (`example_seed`), never from a stateful generator, so a
resumed run (or another process) sees the same source for the same text.

Metrics, as (numerator, denominator) pairs:
- loss: mean NLL (nats) over the real target tokens (text bytes and eos), the optimised loss;
- accuracy, bits_per_byte: teacher-forced argmax accuracy and NLL in bits over the target text
  bytes only (eos excluded from both sums), so bits_per_byte is bits of the predicted text bytes
  per text byte, as in the mlm task;
- at eval also exact_match (the greedy output equals the target, eos included, per example) and
  greedy_byte_accuracy (greedy output byte equals the target byte at the same position, over
  the target text bytes).
"""

import hashlib

import jax.numpy as jnp
import ml_collections
import numpy as np

from noembed.models import HeadSpec
from noembed.models.encoder_decoder import TARGETS_HEAD
from noembed.tasks import common
from noembed.text import bytes as byte_text
from noembed.text import noise as noise_lib
from noembed.text.common import TruncationStats

TARGETS_HEAD_SPEC = HeadSpec(TARGETS_HEAD, vocab_size=byte_text.VOCAB_SIZE)


def example_seed(text: str, seed: int, purpose: str) -> int:
  """A 64-bit seed from sha256 of (purpose, seed, text): the same in every process and run."""
  payload = f"{purpose}\0{seed}\0".encode() + text.encode("utf-8", "surrogatepass")
  return int.from_bytes(hashlib.sha256(payload).digest()[:8], "little")


def _weights(batch):
  """Per-token weights: real target tokens, and the text bytes among them (float32 [B, T])."""
  valid_Bx1 = batch.get("example_valid", jnp.ones(batch["targets"].shape[:1], bool))[:, None]
  tokens_BxT = (batch["targets_mask"].astype(bool) & valid_Bx1).astype(jnp.float32)
  text_bytes_BxT = (batch["target_is_byte"].astype(bool) & valid_Bx1).astype(jnp.float32)
  return tokens_BxT, text_bytes_BxT


def teacher_forced_metrics(logits_BxTxV, batch):
  """(loss, metrics) of teacher-forced logits; see the module docstring for the metrics."""
  targets_BxT = batch["targets"].astype(jnp.int32)
  tokens_BxT, text_bytes_BxT = _weights(batch)
  nll_BxT = common.cross_entropy(logits_BxTxV, targets_BxT)
  correct_BxT = (jnp.argmax(logits_BxTxV, -1) == targets_BxT).astype(jnp.float32)
  num_tokens, num_text_bytes = tokens_BxT.sum(), text_bytes_BxT.sum()
  metrics = {
      "loss": common.ratio((nll_BxT * tokens_BxT).sum(), num_tokens),
      "accuracy": common.ratio((correct_BxT * text_bytes_BxT).sum(), num_text_bytes),
      "bits_per_byte": common.ratio(
          (nll_BxT * text_bytes_BxT).sum() * common.NATS_TO_BITS, num_text_bytes),
  }
  return (nll_BxT * tokens_BxT).sum() / jnp.maximum(num_tokens, 1.0), metrics


def teacher_forced_loss(apply_fn, variables, batch, rng, train):
  """(loss, metrics, new model state) for any task whose batch holds the target keys."""
  outputs = apply_fn(variables, batch, train=train, rngs={"dropout": rng})
  logits_BxTxV, new_state = outputs if train else (outputs, None)
  loss, metrics = teacher_forced_metrics(logits_BxTxV, batch)
  return loss, metrics, new_state


def greedy_method(max_length: int):
  """A model.apply method: greedy decoding of max_length target bytes (always deterministic)."""

  def greedy(model, batch, *, deterministic: bool):
    del deterministic
    return model.greedy_decode(batch, max_length)

  return greedy


def greedy_metrics(tokens_BxT, batch):
  """exact_match and greedy_byte_accuracy of greedy tokens against batch["targets"]."""
  targets_BxT = batch["targets"].astype(jnp.int32)
  _, text_bytes_BxT = _weights(batch)
  valid_B = batch.get("example_valid", jnp.ones(targets_BxT.shape[:1], bool)).astype(
      jnp.float32)
  same_BxT = tokens_BxT == targets_BxT
  exact_B = jnp.all(same_BxT, axis=1).astype(jnp.float32)
  return {
      "exact_match": common.ratio((exact_B * valid_B).sum(), valid_B.sum()),
      "greedy_byte_accuracy": common.ratio(
          (same_BxT.astype(jnp.float32) * text_bytes_BxT).sum(), text_bytes_BxT.sum()),
  }


def encode_targets(texts: list[str], targets_length: int) -> dict[str, np.ndarray]:
  """ByT5 target ids with eos, their mask, the text-byte positions and truncation counts."""
  stats = TruncationStats()
  targets, targets_mask = byte_text.encode(texts, targets_length, add_eos=True, stats=stats)
  return {
      "targets": targets,
      "targets_mask": targets_mask,
      "target_is_byte": targets_mask & (targets >= byte_text.OFFSET),
      # Counted on the host, beside the source's truncated_texts and dropped_units.
      common.HOST_PREFIX + "truncated_targets": np.asarray(stats.truncated_texts, np.int64),
      common.HOST_PREFIX + "dropped_target_bytes": np.asarray(stats.dropped_units, np.int64),
  }


class Seq2Seq:
  """config.task: name "seq2seq", noise, noise_rate, targets_length."""

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "name": "seq2seq",
        "noise": "add_drop_mutate",   # a name in noembed.text.noise.NOISES
        "noise_rate": 0.1,            # ByT5 §6's rate for add_drop_mutate
        "targets_length": 128,        # target bytes, eos included; longer texts are cut
    })

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    task = config.task
    if task.noise not in noise_lib.NOISES:
      raise ValueError(f"config.task.noise must be one of {', '.join(noise_lib.NOISES)}, got "
                       f"{task.noise!r}")
    if not 0.0 <= task.noise_rate <= 1.0:
      raise ValueError(f"config.task.noise_rate must be in [0, 1], got {task.noise_rate!r}")
    if task.targets_length < 2:
      raise ValueError(f"config.task.targets_length must be at least 2 (a byte and eos), got "
                       f"{task.targets_length!r}")
    self.head = TARGETS_HEAD_SPEC
    self.data = common.TaskData(pack_bytes=None)

  def pairs(self, examples: list[dict]) -> tuple[list[str], list[str]]:
    """(sources, targets) of a batch of corpus examples: noised text -> clean text."""
    noise = noise_lib.NOISES[self.config.task.noise]
    targets = [example["text"] for example in examples]
    sources = [noise([text], self.config.task.noise_rate,
                     example_seed(text, self.config.seed, "seq2seq_noise"))[0]
               for text in targets]
    return sources, targets

  def batch_fn(self, examples: list[dict]):
    sources, targets = self.pairs(examples)
    batch = common.encode_texts(self.config, sources)
    batch.update(encode_targets(targets, self.config.task.targets_length))
    return batch

  def loss(self, apply_fn, variables, batch, rng, train: bool = True):
    return teacher_forced_loss(apply_fn, variables, batch, rng, train)

  def eval_metrics(self, apply_fn, variables, batch, rng):
    _, metrics, _ = teacher_forced_loss(apply_fn, variables, batch, rng, False)
    tokens_BxT = apply_fn(variables, batch, train=False, rngs=None,
                          method=greedy_method(batch["targets"].shape[1]))
    return {**metrics, **greedy_metrics(tokens_BxT, batch)}
