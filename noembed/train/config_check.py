"""Validates an experiment config before any work: required keys, types, registered names.

Every failure raises ConfigError naming the key, so launch.py can exit with status 2 before
anything compiles. ml_collections already rejects overrides of keys that do not exist; this
adds what it cannot know: required keys, allowed values and the sections the registries own.
"""

import ml_collections

# Top-level key -> (type or tuple of types, required).
TOP_LEVEL = {
    "seed": (int, True),
    "num_train_steps": (int, True),
    "batch_size": (int, True),
    "log_every_steps": (int, True),
    "eval_every_steps": (int, True),
    "checkpoint_every_steps": (int, True),
    "embedder": (ml_collections.ConfigDict, True),
    "model": (ml_collections.ConfigDict, True),
    "task": (ml_collections.ConfigDict, True),
    "data": (ml_collections.ConfigDict, True),
    "optimizer": (ml_collections.ConfigDict, True),
    "mesh": (ml_collections.ConfigDict, True),
    "logical_axis_rules": ((list, tuple), True),
    "dtype": (str, True),
    "param_dtype": (str, True),
    "init_from": (str, True),
    "max_to_keep": (int, False),
    "eval_steps": (int, False),
    "grad_accum_steps": (int, False),
}
DTYPES = ("float32", "bfloat16", "float16")
MESH_AXES = ("data", "fsdp", "model")
POSITIVE = ("num_train_steps", "batch_size", "log_every_steps", "eval_every_steps",
            "checkpoint_every_steps", "max_to_keep", "grad_accum_steps")


class ConfigError(ValueError):
  """A config that cannot run; the message names the key."""


def _check_type(key: str, value, expected) -> None:
  # bool is an int in Python; a flag like --config.seed=True must still fail.
  if isinstance(value, bool) and expected is int:
    raise ConfigError(f"config.{key} must be int, got bool {value!r}")
  if not isinstance(value, expected):
    names = (expected.__name__ if isinstance(expected, type)
             else " or ".join(t.__name__ for t in expected))
    raise ConfigError(f"config.{key} must be {names}, got {type(value).__name__} {value!r}")


def check_section(path: str, section: ml_collections.ConfigDict,
                  defaults: ml_collections.ConfigDict) -> None:
  """Every key of `section` must exist in `defaults` with a value of the same type."""
  for key, value in section.items():
    if key not in defaults:
      raise ConfigError(f"unknown key config.{path}.{key}; known: {', '.join(sorted(defaults))}")
    default = defaults[key]
    if isinstance(default, ml_collections.ConfigDict):
      if not isinstance(value, ml_collections.ConfigDict):
        raise ConfigError(f"config.{path}.{key} must be a section, got {value!r}")
      check_section(f"{path}.{key}", value, default)
    elif default is not None and value is not None:
      expected = float if isinstance(default, float) else type(default)
      if expected is float and isinstance(value, int) and not isinstance(value, bool):
        continue
      _check_type(f"{path}.{key}", value, expected)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first bad key of `config`."""
  from noembed import inputs  # pylint: disable=g-import-not-at-top
  from noembed import tasks  # pylint: disable=g-import-not-at-top
  from noembed import data  # pylint: disable=g-import-not-at-top
  from noembed import models  # pylint: disable=g-import-not-at-top
  from noembed.train import optimizer  # pylint: disable=g-import-not-at-top

  for key, (expected, required) in TOP_LEVEL.items():
    if key not in config:
      if required:
        raise ConfigError(f"config is missing the required key {key!r}")
      continue
    _check_type(key, config[key], expected)
  for key in config:
    if key not in TOP_LEVEL:
      raise ConfigError(f"unknown top-level key config.{key}; known: {', '.join(TOP_LEVEL)}")
  for key in POSITIVE:
    if key in config and config[key] <= 0:
      raise ConfigError(f"config.{key} must be positive, got {config[key]}")
  for key in ("dtype", "param_dtype"):
    if config[key] not in DTYPES:
      raise ConfigError(f"config.{key} must be one of {DTYPES}, got {config[key]!r}")
  for axis, size in config.mesh.items():
    if axis not in MESH_AXES:
      raise ConfigError(f"unknown mesh axis config.mesh.{axis}; known: {MESH_AXES}")
    _check_type(f"mesh.{axis}", size, int)
    if size == 0 or size < -1:
      raise ConfigError(f"config.mesh.{axis} must be positive or -1, got {size}")
  if sum(size == -1 for size in config.mesh.values()) > 1:
    raise ConfigError(f"at most one axis of config.mesh may be -1, got {dict(config.mesh)}")
  for index, rule in enumerate(config.logical_axis_rules):
    if not (isinstance(rule, (list, tuple)) and len(rule) == 2 and isinstance(rule[0], str)):
      raise ConfigError(f"config.logical_axis_rules[{index}] must be (logical name, mesh axis "
                        f"or None), got {rule!r}")
    targets = rule[1] if isinstance(rule[1], (list, tuple)) else (rule[1],)
    for target in targets:
      if target is not None and target not in MESH_AXES:
        raise ConfigError(f"config.logical_axis_rules[{index}] maps {rule[0]!r} to unknown "
                          f"mesh axis {target!r}; known: {MESH_AXES}")

  for name, registry in (("embedder", inputs), ("model", models), ("task", tasks),
                         ("optimizer", optimizer), ("data", data)):
    section = config[name]
    if "name" not in section or not isinstance(section.name, str):
      raise ConfigError(f"config.{name}.name must be a str")
    try:
      defaults = registry.default_section(section.name)
    except KeyError as error:
      raise ConfigError(f"config.{name}.name: {error.args[0]}") from None
    check_section(name, section, defaults)
