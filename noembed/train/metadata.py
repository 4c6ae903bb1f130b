"""The JSON metadata stored with every checkpoint: config, versions, topology."""

import importlib.metadata

import jax


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def describe(config, mesh) -> dict:
  return {
      "config": config.to_json_best_effort(),
      "versions": {package: _version(package) for package in
                   ("jax", "flax", "optax", "orbax-checkpoint", "grain", "noembed")},
      "mesh": {name: int(size) for name, size in mesh.shape.items()},
      "process_count": jax.process_count(),
      "device_count": jax.device_count(),
  }
