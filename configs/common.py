"""Shared config pieces: every experiment config starts from `base_config`.

Configs are Python (big_vision style): `get_config(arg)` with an argument string such as
"size=tiny,embedder=gbst" that `parse_arg` turns into a dict.
"""

import ml_collections

from noembed import inputs, models, tasks
from noembed.data import default_section as data_section
from noembed.train import optimizer

# Logical axis -> mesh axis. Params shard over fsdp (embed) and model (heads, mlp, vocab);
# activations over the batch axes. A mesh axis is used once per array: `embed` falls back to
# replicated where `batch` already took fsdp.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("embed", None),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("vocab", "model"),
    ("buckets", "model"),
    ("features", None),
    ("layers", None),
)


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """"size=tiny,embedder=gbst" -> ConfigDict, keys and types checked against `defaults`."""
  values = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    if "=" not in item:
      raise ValueError(f"config argument {item!r} is not key=value")
    key, value = item.split("=", 1)
    if key not in values:
      raise ValueError(f"unknown config argument {key!r}; known: {', '.join(defaults)}")
    kind = type(defaults[key])
    values[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
  return values


def base_config(embedder: str = "byte", model: str = "encoder", task: str = "mlm",
                optimizer_name: str = "adamw") -> ml_collections.ConfigDict:
  """Every required key with a default; experiment configs override what they vary."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.num_train_steps = 1000
  config.batch_size = 32
  config.log_every_steps = 10
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  config.max_to_keep = 3
  config.eval_steps = 0            # 0 = a full pass over the validation split
  config.grad_accum_steps = 1
  config.embedder = inputs.embedder_config(embedder)
  config.model = models.default_section(model)
  config.task = tasks.default_section(task)
  config.data = data_section("udhr")
  config.optimizer = optimizer.default_section(optimizer_name)
  config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
  config.logical_axis_rules = [list(rule) for rule in DEFAULT_RULES]
  config.dtype = "float32"
  config.param_dtype = "float32"
  config.init_from = ""
  return config


def set_cadence(config: ml_collections.ConfigDict, size: str) -> None:
  """Steps, batch and log/eval/checkpoint cadence of the `small` and `tiny` variants.

  small: a few minutes on a laptop CPU; tiny: seconds (what the tests run).
  """
  if size == "small":
    config.update(num_train_steps=600, batch_size=32, log_every_steps=20,
                  eval_every_steps=200, checkpoint_every_steps=200, eval_steps=8)
  elif size == "tiny":
    config.update(num_train_steps=8, batch_size=8, log_every_steps=1, eval_every_steps=4,
                  checkpoint_every_steps=4, eval_steps=2)
    config.optimizer.warmup_steps = 2
  else:
    raise ValueError(f"config argument size must be 'small' or 'tiny', got {size!r}")
