"""Text classification over a label field of the corpus (language or script identification)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from noembed.data import udhr
from noembed.models import HeadSpec
from noembed.tasks import common


class Classification:
  """config.task: name "classification", label_field ("language" | "script")."""

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "name": "classification",
        "label_field": "script",
    })

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    field = config.task.label_field
    if field not in ("language", "script"):
      raise ValueError(f"config.task.label_field must be 'language' or 'script', got {field!r}")
    self.label_names = udhr.label_names(field)
    self.label_ids = {name: index for index, name in enumerate(self.label_names)}
    self.head = HeadSpec("pooled", num_classes=len(self.label_names))
    self.data = common.TaskData(pack_bytes=None)

  def batch_fn(self, examples: list[dict]):
    batch = common.encode_texts(self.config, [example["text"] for example in examples])
    field = self.config.task.label_field
    # Padding examples of an eval pass carry no label; they are masked by example_valid.
    batch["label"] = np.asarray(
        [self.label_ids.get(example.get(field, ""), 0) for example in examples], np.int32)
    return batch

  def _metrics(self, apply_fn, variables, batch, rng, train):
    outputs = apply_fn(variables, batch, train=train, rngs={"dropout": rng})
    logits, new_state = outputs if train else (outputs, None)
    weight = batch.get("example_valid", jnp.ones(logits.shape[:1], bool)).astype(jnp.float32)
    nll = common.cross_entropy(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    count = weight.sum()
    metrics = {
        "loss": common.ratio((nll * weight).sum(), count),
        "accuracy": common.ratio((correct * weight).sum(), count),
    }
    return (nll * weight).sum() / jnp.maximum(count, 1.0), metrics, new_state

  def loss(self, apply_fn, variables, batch, rng, train: bool = True):
    return self._metrics(apply_fn, variables, batch, rng, train)

  def eval_metrics(self, apply_fn, variables, batch, rng):
    del rng
    return self._metrics(apply_fn, variables, batch, jax.random.PRNGKey(0), False)[1]
