"""Masked-unit prediction: BERT-style masking over the selected input method's units.

The units are whatever the front end produces (bytes for ByT5/GBST, code points for CANINE,
pieces for the subword baseline, tokens for projection, slices for rendered text); each input
method says in noembed.inputs how its units are corrupted and what a masked unit must predict.
A rate `mask_rate` of the maskable units is chosen; of those, `keep_rate` stay unchanged and
the rest are replaced by the method's mask value (BERT's 80/10/10 without random replacement,
which has no method-independent meaning). Reports `bits_per_byte` over the masked units where
the targets determine the text (bytes, pieces).
"""

import jax
import jax.numpy as jnp
import ml_collections

from noembed import inputs
from noembed.models import HeadSpec
from noembed.tasks import common


class MaskedUnitPrediction:
  """config.task: name "mlm", mask_rate, keep_rate, pack_bytes."""

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "name": "mlm",
        "mask_rate": 0.15,
        "keep_rate": 0.1,
        "pack_bytes": 128,      # pretraining texts are packed into examples of this many bytes
    })

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    method, method_config = inputs.selected(config.embedder)
    if method.masked_units is None:
      raise ValueError(f"task mlm needs units to mask; embedder {method.name!r} has none")
    self.units = method.masked_units(method_config)
    self.head = HeadSpec("units", vocab_size=self.units.vocab_size,
                         num_heads=self.units.num_heads)
    self.data = common.TaskData(pack_bytes=config.task.pack_bytes)

  def batch_fn(self, examples: list[dict]):
    return common.encode_texts(self.config, [example["text"] for example in examples])

  def _choose(self, batch, rng):
    maskable = self.units.maskable(batch)
    if "example_valid" in batch:
      maskable = maskable & batch["example_valid"][:, None]
    choose_rng, keep_rng = jax.random.split(rng)
    chosen = maskable & jax.random.bernoulli(choose_rng, self.config.task.mask_rate,
                                             maskable.shape)
    corrupted = chosen & ~jax.random.bernoulli(keep_rng, self.config.task.keep_rate,
                                               chosen.shape)
    return chosen, corrupted

  def _metrics(self, apply_fn, variables, batch, rng, train):
    mask_rng, dropout_rng = jax.random.split(rng)
    chosen, corrupted = self._choose(batch, mask_rng)
    model_inputs = self.units.corrupt(batch, corrupted)
    outputs = apply_fn(variables, model_inputs, train=train, rngs={"dropout": dropout_rng})
    logits, new_state = outputs if train else (outputs, None)
    targets = self.units.targets(batch).astype(jnp.int32)
    nll_BxLxH = common.cross_entropy(logits, targets)
    weight = chosen.astype(jnp.float32)
    nll_BxL = nll_BxLxH.sum(-1)
    count = weight.sum()
    correct = (jnp.argmax(logits, -1) == targets).all(-1).astype(jnp.float32)
    metrics = {
        "loss": common.ratio((nll_BxL * weight).sum(), count),
        "accuracy": common.ratio((correct * weight).sum(), count),
        "masked_units": common.ratio(count, 1.0),
    }
    if self.units.unit_bytes is not None:
      masked_bytes = (self.units.unit_bytes(batch) * weight).sum()
      metrics["bits_per_byte"] = common.ratio(
          (nll_BxL * weight).sum() * common.NATS_TO_BITS, masked_bytes)
    loss = (nll_BxL * weight).sum() / jnp.maximum(count, 1.0)
    return loss, metrics, new_state

  def loss(self, apply_fn, variables, batch, rng, train: bool = True):
    return self._metrics(apply_fn, variables, batch, rng, train)

  def eval_metrics(self, apply_fn, variables, batch, rng):
    return self._metrics(apply_fn, variables, batch, rng, False)[1]
