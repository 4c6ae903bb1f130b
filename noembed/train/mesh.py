"""Device mesh and logical-axis sharding from the config (axes data, fsdp, model).

Model code names logical axes only; `config.logical_axis_rules` maps them onto this mesh.
Shapes are checked against the mesh up front, so a dimension that does not divide its mesh
axis fails with a message naming both instead of being silently replicated (jax#26946).
"""

import logging
import math

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from noembed.train.config_check import ConfigError

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")


def mesh_shape(mesh_config, num_devices: int) -> tuple[int, ...]:
  """Sizes of (data, fsdp, model); a -1 takes the devices the others leave.

  A mesh without -1 may use fewer devices than there are (single process only): the first
  ones, with a warning.
  """
  sizes = [int(mesh_config.get(axis, 1)) for axis in AXES]
  fixed = math.prod(size for size in sizes if size != -1)
  if -1 in sizes:
    if num_devices % fixed:
      raise ConfigError(f"config.mesh {dict(mesh_config)}: the fixed axes ({fixed} devices) do "
                        f"not divide the {num_devices} devices")
    sizes[sizes.index(-1)] = num_devices // fixed
  if math.prod(sizes) < num_devices and jax.process_count() == 1:
    logging.warning("config.mesh %s uses %d of the %d devices", dict(mesh_config),
                    math.prod(sizes), num_devices)
  elif math.prod(sizes) != num_devices:
    raise ConfigError(f"config.mesh {dict(mesh_config)} needs {math.prod(sizes)} devices, "
                      f"there are {num_devices}")
  return tuple(sizes)


def make_mesh(mesh_config) -> jax.sharding.Mesh:
  shape = mesh_shape(mesh_config, jax.device_count())
  return jax.make_mesh(shape, AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(AXES),
                       devices=jax.devices()[:math.prod(shape)])


def rules(config) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
  return tuple((name, tuple(axis) if isinstance(axis, list) else axis)
               for name, axis in config.logical_axis_rules)


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def check_batch(batch_size: int, mesh, process_count: int) -> None:
  """The global batch must split evenly over batch axes and processes."""
  shards = math.prod(mesh.shape[axis] for axis in BATCH_AXES)
  if batch_size % shards:
    raise ConfigError(f"config.batch_size={batch_size} does not divide over the batch mesh axes "
                      f"data x fsdp = {shards}")
  if batch_size % process_count:
    raise ConfigError(f"config.batch_size={batch_size} does not divide over {process_count} "
                      f"processes")


def state_shardings(abstract_boxed_state, mesh, axis_rules):
  """NamedShardings for a state whose params carry logical axis names (LogicallyPartitioned)."""
  logical_specs = nn.get_partition_spec(abstract_boxed_state)
  return nn.logical_to_mesh_sharding(logical_specs, mesh, axis_rules)


def check_divisible(abstract_state, shardings) -> None:
  """Raises ConfigError naming the first array whose dimension does not divide its mesh axes."""
  paths_and_leaves = jax.tree_util.tree_leaves_with_path(abstract_state)
  sharding_leaves = jax.tree_util.tree_leaves(
      shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
  for (path, leaf), sharding in zip(paths_and_leaves, sharding_leaves):
    for dim, axes in enumerate(sharding.spec):
      if axes is None:
        continue
      axes = axes if isinstance(axes, tuple) else (axes,)
      size = math.prod(sharding.mesh.shape[axis] for axis in axes)
      if leaf.shape[dim] % size:
        raise ConfigError(
            f"{jax.tree_util.keystr(path)} has shape {leaf.shape}: dimension {dim} "
            f"({leaf.shape[dim]}) does not divide mesh axes {axes} (size {size}); change "
            f"config.mesh or config.logical_axis_rules")


def global_batch(local_batch: dict[str, np.ndarray], sharding) -> dict[str, jax.Array]:
  """Process-local numpy arrays -> global jax arrays sharded over the batch axes."""
  return {key: jax.make_array_from_process_local_data(sharding, value)
          for key, value in local_batch.items()}
