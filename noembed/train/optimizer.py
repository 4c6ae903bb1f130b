"""Optimizers and learning-rate schedules from config.optimizer, via optax.

config.optimizer: name ("adamw" | "adafactor"), learning_rate (peak), schedule ("cosine" |
"rsqrt" | "linear" | "constant"), warmup_steps, end_learning_rate_ratio (cosine/linear),
weight_decay, weight_decay_exclude (regex over the param path: matching params and every
param of rank < 2 get no decay), grad_clip_norm (0 = off), b1, b2, eps (AdamW).
"""

import re

import jax
import jax.numpy as jnp
import ml_collections
import optax


def default_config(name: str = "adamw") -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "name": name,
      "learning_rate": 1e-3,
      "schedule": "cosine",
      "warmup_steps": 100,
      "end_learning_rate_ratio": 0.0,
      "weight_decay": 0.01,
      "weight_decay_exclude": r"(bias|scale|norm)",
      "grad_clip_norm": 1.0,
      "b1": 0.9,
      "b2": 0.999,
      "eps": 1e-8,
  })


NAMES = ("adamw", "adafactor")
SCHEDULES = ("cosine", "rsqrt", "linear", "constant")


def default_section(name: str) -> ml_collections.ConfigDict:
  if name not in NAMES:
    raise KeyError(f"unknown optimizer {name!r}; known: {', '.join(NAMES)}")
  return default_config(name)


def schedule(config: ml_collections.ConfigDict, num_train_steps: int) -> optax.Schedule:
  """Linear warmup to config.learning_rate, then the named decay."""
  peak, warmup = config.learning_rate, config.warmup_steps
  end = peak * config.end_learning_rate_ratio
  warmup_fn = optax.linear_schedule(0.0, peak, max(warmup, 1))
  if config.schedule == "cosine":
    decay = optax.cosine_decay_schedule(peak, max(num_train_steps - warmup, 1), end / peak
                                        if peak else 0.0)
  elif config.schedule == "linear":
    decay = optax.linear_schedule(peak, end, max(num_train_steps - warmup, 1))
  elif config.schedule == "rsqrt":
    decay = lambda step: peak * jnp.sqrt(max(warmup, 1) / (step + max(warmup, 1)))
  elif config.schedule == "constant":
    decay = optax.constant_schedule(peak)
  else:
    raise ValueError(f"config.optimizer.schedule must be one of {SCHEDULES}, got "
                     f"{config.schedule!r}")
  if warmup == 0:
    return decay
  return optax.join_schedules([warmup_fn, decay], [warmup])


def decay_mask(params, exclude_pattern: str):
  """True for params that get weight decay: rank >= 2 and path not matching the pattern."""
  pattern = re.compile(exclude_pattern) if exclude_pattern else None

  def wants_decay(path, leaf):
    name = "/".join(str(getattr(key, "key", key)) for key in path)
    return leaf.ndim >= 2 and not (pattern and pattern.search(name))

  return jax.tree_util.tree_map_with_path(wants_decay, params)


def make(config: ml_collections.ConfigDict, num_train_steps: int):
  """(optax transformation, learning-rate schedule) for config.optimizer."""
  lr = schedule(config, num_train_steps)
  mask = lambda params: decay_mask(params, config.weight_decay_exclude)
  if config.name == "adamw":
    core = optax.adamw(lr, b1=config.b1, b2=config.b2, eps=config.eps,
                       weight_decay=config.weight_decay, mask=mask)
  elif config.name == "adafactor":
    core = optax.adafactor(lr, weight_decay_rate=config.weight_decay or None,
                           weight_decay_mask=mask)
  else:
    raise ValueError(f"config.optimizer.name must be one of {NAMES}, got {config.name!r}")
  parts = [optax.clip_by_global_norm(config.grad_clip_norm)] if config.grad_clip_norm else []
  return optax.chain(*parts, core), lr
