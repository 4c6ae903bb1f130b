"""The same training steps on different meshes give the same losses (8 forced CPU devices)."""

import jax
import pytest

from noembed import train
from tests.run_metrics import read_metrics

MESHES = [
    {"data": 1, "fsdp": 1, "model": 1},
    {"data": 4, "fsdp": 1, "model": 2},
    {"data": 2, "fsdp": 2, "model": 2},
]


def test_losses_do_not_depend_on_the_mesh(tiny_config, tmp_path):
  assert jax.device_count() == 8
  losses = []
  for index, mesh in enumerate(MESHES):
    config = tiny_config.copy_and_resolve_references()
    config.mesh.update(mesh)
    config.num_train_steps = 5
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 100
    train.run(config, tmp_path / f"mesh{index}")
    records = read_metrics(tmp_path / f"mesh{index}")
    losses.append([records[step]["train_loss"] for step in range(1, 6)])
  for mesh, mesh_losses in zip(MESHES[1:], losses[1:]):
    assert mesh_losses == pytest.approx(losses[0], abs=1e-5), mesh
  assert losses[0][0] != losses[0][-1]  # the steps really trained


def test_params_are_sharded_per_the_rules(tiny_config, tmp_path):
  from noembed.train import mesh as mesh_lib, state as state_lib  # pylint: disable=g-import-not-at-top
  from noembed import models, tasks  # pylint: disable=g-import-not-at-top
  from noembed.train import loop, optimizer  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  config = tiny_config
  config.mesh.update({"data": 4, "fsdp": 1, "model": 2})
  mesh = mesh_lib.make_mesh(config.mesh)
  task = tasks.build(config)
  model = models.build(config, task.head)
  tx, _ = optimizer.make(config.optimizer, config.num_train_steps)
  with jax.set_mesh(mesh), nn.logical_axis_rules(mesh_lib.rules(config)):
    sample = mesh_lib.global_batch(loop._sample_batch(task, 4), mesh_lib.batch_sharding(mesh))
    state, _, _ = state_lib.create(model, tx, sample, jax.random.PRNGKey(0), mesh,
                                   mesh_lib.rules(config))
  head_kernel = state.params["output"]["UnitHead_0" if "UnitHead_0" in state.params["output"]
                                       else "logits"]["kernel"]
  # ("embed", "vocab") -> (fsdp, model): the vocab columns split over the 2 model devices.
  assert head_kernel.sharding.spec[1] == "model"
  assert head_kernel.addressable_shards[0].data.shape[1] == head_kernel.shape[1] // 2
