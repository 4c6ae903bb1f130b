"""The training loop shared by every model family and task.

run(config, workdir): validate -> mesh -> task, model, optimizer -> state born sharded ->
resume from workdir/checkpoints (or init_from) -> jitted donated steps, fetching step N's metrics
after dispatching step N+1 -> eval, metrics, checkpoints -> wait for the last save.
"""

import dataclasses
import math
import signal
import time
from pathlib import Path

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from noembed import models, tasks
from noembed.tasks.common import HOST_PREFIX
from noembed.train import checkpoint as checkpoint_lib
from noembed.train import config_check, data, metadata, step as step_lib
from noembed.train import mesh as mesh_lib
from noembed.train import metrics as metrics_lib
from noembed.train import optimizer as optimizer_lib
from noembed.train import state as state_lib


class NonFiniteLoss(FloatingPointError):
  """The loss became NaN or inf; the message names the step."""


@dataclasses.dataclass
class RunResult:
  """What run() reports: the step reached, why it stopped, the last metrics of each split."""

  step: int
  stopped_by: str            # "done", "SIGTERM", "SIGINT"
  workdir: Path
  last_metrics: dict[str, dict[str, float]]


class _StopSignals:
  """Turns SIGTERM/SIGINT into a flag the loop checks after each step (save, then exit)."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    for signum in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[signum] = signal.signal(signum, self._handle)
      except ValueError:  # not the main thread: signals stay with the caller
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def should_stop(self) -> str | None:
    """The signal name if any process received one (all processes stop at the same step)."""
    if jax.process_count() == 1:
      return self.received
    flags = multihost_utils.process_allgather(np.int32(self.received is not None))
    return self.received or ("SIGTERM" if np.any(flags) else None)


def _sample_batch(task, batch_size: int, valid: bool = True):
  """A batch of empty examples: shapes for init, or (valid=False) eval padding."""
  examples = [{"text": "", "language": "", "script": ""}] * batch_size
  batch = task.batch_fn(examples)
  batch["example_valid"] = np.full((batch_size,), valid)
  return {key: value for key, value in batch.items() if not key.startswith(HOST_PREFIX)}


def _split_host(batch: dict) -> tuple[dict, dict]:
  device = {key: value for key, value in batch.items() if not key.startswith(HOST_PREFIX)}
  host = {key[len(HOST_PREFIX):]: value for key, value in batch.items()
          if key.startswith(HOST_PREFIX)}
  return device, host


def _sum_over_processes(counts: dict[str, int]) -> dict[str, int]:
  """Host-side counters summed over all processes (each counted only its own batches)."""
  if jax.process_count() == 1 or not counts:
    return counts
  keys = sorted(counts)
  summed = multihost_utils.process_allgather(np.asarray([counts[key] for key in keys],
                                                        np.int64)).sum(0)
  return {key: int(value) for key, value in zip(keys, summed)}


def _accumulate(total: dict | None, pairs: dict) -> dict:
  if total is None:
    return {key: [float(numerator), float(denominator)]
            for key, (numerator, denominator) in pairs.items()}
  for key, (numerator, denominator) in pairs.items():
    total[key][0] += float(numerator)
    total[key][1] += float(denominator)
  return total


def _reduce(total: dict) -> dict[str, float]:
  return {key: numerator / denominator if denominator else 0.0
          for key, (numerator, denominator) in total.items()}


def evaluate(eval_step, state, make_eval_iterator, mesh, max_batches: int,
             padding_batch: dict) -> dict[str, float]:
  """One pass over the eval split (or its first max_batches batches).

  With several processes, one whose shard ran out feeds `padding_batch` (no valid examples)
  until every process is done, so the collective eval step never waits on a missing peer.
  """
  sharding = mesh_lib.batch_sharding(mesh)
  total, host_totals = None, {}
  iterator = iter(make_eval_iterator())
  index = 0
  while not max_batches or index < max_batches:
    batch = next(iterator, None)
    if jax.process_count() > 1:
      any_left = np.any(multihost_utils.process_allgather(np.int32(batch is not None)))
    else:
      any_left = batch is not None
    if not any_left:
      break
    device_batch, host_counts = _split_host(batch if batch is not None else padding_batch)
    for key, value in host_counts.items():
      host_totals[key] = host_totals.get(key, 0) + int(value)
    pairs = eval_step(state, mesh_lib.global_batch(device_batch, sharding), index)
    total = _accumulate(total, jax.device_get(pairs))
    index += 1
  return {**_reduce(total or {}), **_sum_over_processes(host_totals)}


def run(config: ml_collections.ConfigDict, workdir) -> RunResult:
  """Trains config in workdir; a workdir with checkpoints resumes from its newest good one."""
  config_check.validate(config)
  mesh = mesh_lib.make_mesh(config.mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(mesh_lib.rules(config)):
    return _run(config, Path(workdir), mesh)


def _run(config, workdir: Path, mesh) -> RunResult:
  primary = jax.process_index() == 0
  mesh_lib.check_batch(config.batch_size, mesh, jax.process_count())
  grad_accum = config.get("grad_accum_steps", 1)
  if (config.batch_size // jax.process_count()) % grad_accum:
    raise config_check.ConfigError(
        f"config.grad_accum_steps={grad_accum} does not divide the per-process batch "
        f"{config.batch_size // jax.process_count()}")
  axis_rules = mesh_lib.rules(config)
  if primary:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    print(f"resolved config:\n{config}", flush=True)
    print(f"mesh {dict(mesh.shape)} over {jax.device_count()} devices, "
          f"{jax.process_count()} process(es); workdir {workdir}", flush=True)

  task = tasks.build(config)
  model = models.build(config, task.head)
  tx, learning_rate_fn = optimizer_lib.make(config.optimizer, config.num_train_steps)
  base_rng = jax.random.PRNGKey(config.seed)
  batch_shards = math.prod(mesh.shape[axis] for axis in mesh_lib.BATCH_AXES)
  sample = mesh_lib.global_batch(_sample_batch(task, batch_shards // jax.process_count()
                                               or 1), mesh_lib.batch_sharding(mesh))
  init_state, shardings, abstract = state_lib.plan(model, tx, sample, mesh, axis_rules)

  train_iterator = data.make_iterator(config, task, "train", train=True)
  checkpointer = checkpoint_lib.Checkpointer(workdir / "checkpoints",
                                             config.get("max_to_keep", 3))
  restored = checkpointer.restore_latest(abstract, train_iterator)
  if restored is not None:
    state, start_step, saved_metadata = restored
    if primary:
      print(f"resumed from step {start_step} (saved by {saved_metadata.get('versions')})",
            flush=True)
  else:
    start_step = 0
    state = init_state(jax.random.fold_in(base_rng, 0x1D17))
    if config.init_from:
      loaded = checkpoint_lib.restore_params(Path(config.init_from), abstract)
      state = state.replace(params=loaded.params, model_state=loaded.model_state)
      if primary:
        print(f"initialised params from {config.init_from}", flush=True)

  batch_sharding = mesh_lib.batch_sharding(mesh)
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(model, task, tx, learning_rate_fn,
                               jax.random.fold_in(base_rng, 0x57E9), grad_accum),
      shardings, batch_sharding)
  eval_step = step_lib.jit_eval_step(
      step_lib.make_eval_step(model, task, jax.random.fold_in(base_rng, 0xE7A1)),
      shardings, batch_sharding)
  make_eval_iterator = lambda: data.make_iterator(config, task, "validation", train=False)
  eval_padding = _sample_batch(task, config.batch_size // jax.process_count(), valid=False)

  writer = metrics_lib.MetricsWriter(workdir, enabled=primary)
  progress = metrics_lib.Progress(start_step, config.num_train_steps, enabled=primary)
  run_metadata = metadata.describe(config, mesh)
  last_metrics: dict[str, dict[str, float]] = {}
  interval_total, interval_host = None, {}
  interval_start = time.time()
  interval_steps = 0
  pending = None  # (step, metric pairs on device) of the step dispatched last
  stopped_by = "done"

  def resolve(pending_step, pending_pairs):
    """Fetches one step's metrics; stops the run on a non-finite loss."""
    nonlocal interval_total
    pairs = jax.device_get(pending_pairs)
    loss = float(pairs["train_loss"][0])
    if not math.isfinite(loss):
      raise NonFiniteLoss(
          f"loss is {loss} at step {pending_step}; stopping. The last good checkpoint in "
          f"{checkpointer.directory} (steps {checkpointer.steps()}) is kept.")
    interval_total = _accumulate(interval_total, pairs)

  def save(at_step):
    checkpointer.save(at_step, state, train_iterator, {**run_metadata, "step": at_step})

  def log_train(at_step):
    nonlocal interval_total, interval_host, interval_start, interval_steps
    values = _reduce(interval_total)
    elapsed = max(time.time() - interval_start, 1e-9)
    values["examples_per_second"] = interval_steps * config.batch_size / elapsed
    values["bytes_per_second"] = values.pop("batch_bytes", 0.0) * interval_steps / elapsed
    values.update({key: float(value)
                   for key, value in _sum_over_processes(interval_host).items()})
    values["loss"] = values.get("loss", values.get("train_loss", 0.0))
    writer.write(at_step, "train", values)
    progress.update(at_step, values)
    last_metrics["train"] = values
    interval_total, interval_host, interval_steps = None, {}, 0
    interval_start = time.time()

  def run_eval(at_step):
    values = evaluate(eval_step, state, make_eval_iterator, mesh, config.get("eval_steps", 0),
                      eval_padding)
    writer.write(at_step, "validation", values)
    progress.write(f"step {at_step} validation " + " ".join(
        f"{key}={value:.4g}" for key, value in values.items()))
    last_metrics["validation"] = values

  with _StopSignals() as signals:
    try:
      if start_step == 0:
        run_eval(0)
      for step in range(start_step, config.num_train_steps):
        local_batch = next(train_iterator)
        device_batch, host_counts = _split_host(local_batch)
        for key, value in host_counts.items():
          interval_host[key] = interval_host.get(key, 0) + int(value)
        state, pairs = train_step(state, mesh_lib.global_batch(device_batch, batch_sharding))
        if pending is not None:
          resolve(*pending)
        pending = (step + 1, pairs)
        interval_steps += 1
        done = step + 1
        is_last = done == config.num_train_steps
        stop = signals.should_stop()
        if done % config.log_every_steps == 0 or is_last or stop:
          resolve(*pending)
          pending = None
          log_train(done)
        if done % config.checkpoint_every_steps == 0 or is_last or stop:
          if pending is not None:
            resolve(*pending)
            pending = None
          save(done)
        if done % config.eval_every_steps == 0 or is_last:
          run_eval(done)
        if stop:
          stopped_by = stop
          progress.write(f"{stop} received: saved a checkpoint at step {done} in "
                         f"{checkpointer.directory}; run again with the same workdir to resume")
          break
    finally:
      checkpointer.close()
      writer.close()
      progress.close()
  return RunResult(step=int(jax.device_get(state.step)), stopped_by=stopped_by,
                   workdir=workdir, last_metrics=last_metrics)
