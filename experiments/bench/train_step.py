"""Train-step time of a config on a given number of (forced CPU) devices.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m experiments.bench.train_step \
      --config configs/quickstart.py --devices 1 8

Median of --repeats timed steps after --warmup steps, on a fixed batch from the real pipeline.
Prints a table and writes JSON (--output). Not a test: asserts nothing about time.
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import flax.linen as nn  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from noembed import models, tasks  # pylint: disable=g-import-not-at-top,wrong-import-position
from noembed.train import config_check, data, loop  # pylint: disable=wrong-import-position
from noembed.train import mesh as mesh_lib  # pylint: disable=wrong-import-position
from noembed.train import optimizer, state as state_lib  # pylint: disable=wrong-import-position
from noembed.train import step as step_lib  # pylint: disable=wrong-import-position


def time_steps(config, num_devices: int, warmup: int, repeats: int) -> dict:
  config = config.copy_and_resolve_references()
  config.mesh.update({"data": num_devices, "fsdp": 1, "model": 1})
  config_check.validate(config)
  mesh = mesh_lib.make_mesh(config.mesh)
  rules = mesh_lib.rules(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    task = tasks.build(config)
    model = models.build(config, task.head)
    tx, lr = optimizer.make(config.optimizer, config.num_train_steps)
    sharding = mesh_lib.batch_sharding(mesh)
    batch, _ = loop._split_host(next(data.make_iterator(config, task, "train", train=True)))  # pylint: disable=protected-access
    batch = mesh_lib.global_batch(batch, sharding)
    state, shardings, _ = state_lib.create(model, tx, batch, jax.random.PRNGKey(0), mesh, rules)
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(model, task, tx, lr, jax.random.PRNGKey(1)), shardings,
        sharding)
    for _ in range(warmup):
      state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      state, metrics = train_step(state, batch)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
  return {"devices": num_devices, "median_s": statistics.median(times),
          "min_s": min(times), "repeats": repeats,
          "examples_per_s": config.batch_size / statistics.median(times)}


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--config", default="configs/quickstart.py")
  parser.add_argument("--devices", type=int, nargs="+", default=[1, 8])
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--output", default="experiments/bench/results/train_step.json")
  args = parser.parse_args()
  config = config_flags.config_flags._LoadConfigModule("config", args.config.split(":")[0])  # pylint: disable=protected-access
  config = config.get_config(args.config.split(":")[1] if ":" in args.config else None)
  rows = [time_steps(config, devices, args.warmup, args.repeats) for devices in args.devices]
  print(f"{'devices':>8} {'median step (ms)':>17} {'min (ms)':>9} {'examples/s':>11}")
  for row in rows:
    print(f"{row['devices']:>8} {1000 * row['median_s']:>17.1f} {1000 * row['min_s']:>9.1f} "
          f"{row['examples_per_s']:>11.1f}")
  Path(args.output).parent.mkdir(parents=True, exist_ok=True)
  Path(args.output).write_text(json.dumps({"config": args.config, "rows": rows}, indent=2))


if __name__ == "__main__":
  main()
