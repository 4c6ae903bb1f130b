"""Registry pairing each text front end (noembed.text) with its embedder (noembed.nn.embedders).

The data pipeline asks an `InputMethod` how to turn text into arrays (`encode`); the model asks
it which module to build (`build_embedder`); the masked-unit objective asks it how to corrupt and
predict its units (`masked_units`). All three are looked up by `config.embedder.name`.

Adding a method is one front end, one embedder and one file here that calls `register`.
"""

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np

from noembed.text.common import TruncationStats

# Modules under noembed/inputs/, each registering one method when imported.
METHOD_MODULES = ("byte", "canine_hash", "gbst", "projection", "visual", "subword")


@dataclasses.dataclass(frozen=True)
class MaskedUnits:
  """How the masked-unit objective corrupts and predicts one method's units (device side).

  key: the inputs entry whose axis 1 holds the units (ids, features, slices...).
  maskable: inputs -> bool [B, L], real units that may be masked (not padding or specials).
  corrupt: (inputs, masked [B, L] bool) -> inputs with the masked units replaced by the
    method's mask value.
  targets: inputs -> int32 [B, L, num_heads], what each unit position must predict.
  num_heads, vocab_size: the prediction head is num_heads softmaxes over vocab_size classes.
  unit_bytes: inputs -> int32 [B, L] UTF-8 bytes each unit stands for, where the targets
    determine the text exactly (so bits_per_byte is exact); None where they do not.
  """

  key: str
  maskable: Callable[[dict], Any]
  corrupt: Callable[[dict, Any], dict]
  targets: Callable[[dict], Any]
  num_heads: int
  vocab_size: int
  unit_bytes: Callable[[dict], Any] | None = None


@dataclasses.dataclass(frozen=True)
class InputMethod:
  """One input method: a host front end paired with the embedder that consumes its arrays.

  default_config: () -> ConfigDict of the front-end and embedder options (config.embedder.NAME).
  encode: (texts, method_config, stats) -> dict of numpy arrays, all with the batch on axis 0
    and a bool `mask` of the units. `stats` (TruncationStats or None) counts truncation.
  build_embedder: (method_config, *, d_model, dtype, param_dtype) -> linen Module.
  masked_units: method_config -> MaskedUnits, or None where the method has no units to mask.
  """

  name: str
  default_config: Callable[[], ml_collections.ConfigDict]
  encode: Callable[[Sequence[str], ml_collections.ConfigDict, TruncationStats | None],
                   dict[str, np.ndarray]]
  build_embedder: Callable[..., Any]
  masked_units: Callable[[ml_collections.ConfigDict], MaskedUnits] | None = None


_REGISTRY: dict[str, InputMethod] = {}


def register(method: InputMethod) -> InputMethod:
  if method.name in _REGISTRY:
    raise ValueError(f"input method {method.name!r} is registered twice")
  _REGISTRY[method.name] = method
  return method


def _load_all() -> None:
  for module in METHOD_MODULES:
    importlib.import_module(f"noembed.inputs.{module}")


def names() -> tuple[str, ...]:
  _load_all()
  return tuple(_REGISTRY)


def get(name: str) -> InputMethod:
  """The input method called `name`; a KeyError lists the known ones."""
  _load_all()
  if name not in _REGISTRY:
    raise KeyError(f"unknown embedder name {name!r}; known: {', '.join(sorted(_REGISTRY))}")
  return _REGISTRY[name]


def embedder_config(selected: str) -> ml_collections.ConfigDict:
  """config.embedder: `name` plus every method's defaults, so overrides can switch methods.

  `--config.embedder.name=gbst --config.embedder.gbst.max_block_size=3` then works from any
  config; only the selected method's section is used.
  """
  get(selected)
  config = ml_collections.ConfigDict({"name": selected})
  for name in names():
    config[name] = _REGISTRY[name].default_config()
  return config


def selected(embedder: ml_collections.ConfigDict) -> tuple[InputMethod, ml_collections.ConfigDict]:
  """The method chosen by config.embedder.name and its own section of the config."""
  method = get(embedder.name)
  if method.name not in embedder:
    raise KeyError(f"config.embedder has no section {method.name!r} for embedder.name="
                   f"{method.name!r}; build it with noembed.inputs.embedder_config")
  return method, embedder[method.name]


def default_section(name: str) -> ml_collections.ConfigDict:
  """What config.embedder may hold when embedder.name is `name` (config validation)."""
  return embedder_config(name)
