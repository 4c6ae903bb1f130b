"""Pieces shared by the tasks: encoding examples with the selected input method, metric pairs."""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from noembed import inputs
from noembed.text import bytes as byte_text
from noembed.text.common import TruncationStats

# Keys of a batch that stay on the host (counters); the loop pops them before the device step.
HOST_PREFIX = "host_"


@dataclasses.dataclass(frozen=True)
class TaskData:
  """What a task reads: pack_bytes packs texts for pretraining (None = one text per example)."""

  pack_bytes: int | None = None


def encode_texts(config, texts: list[str]) -> dict[str, np.ndarray]:
  """Runs the selected input method's front end; adds UTF-8 byte counts and truncation counts."""
  method, method_config = inputs.selected(config.embedder)
  stats = TruncationStats()
  batch = dict(method.encode(texts, method_config, stats))
  batch["num_bytes"] = byte_text.num_bytes(texts)
  batch[HOST_PREFIX + "truncated_texts"] = np.asarray(stats.truncated_texts, np.int64)
  batch[HOST_PREFIX + "dropped_units"] = np.asarray(stats.dropped_units, np.int64)
  return batch


def cross_entropy(logits, targets):
  """Per-target negative log-likelihood in nats; logits [..., V], int targets [...]."""
  log_probs = jnp.asarray(logits, jnp.float32)
  log_probs = log_probs - jnp.max(log_probs, axis=-1, keepdims=True)
  log_probs = log_probs - jnp.log(jnp.sum(jnp.exp(log_probs), axis=-1, keepdims=True))
  return -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


def ratio(numerator, denominator):
  return (jnp.asarray(numerator, jnp.float32), jnp.asarray(denominator, jnp.float32))


NATS_TO_BITS = 1.0 / math.log(2.0)
