"""Orbax checkpointing: train state + grain iterator state + JSON metadata, one step each.

Saves are async (`wait_until_finished` before exit). Restore goes into an abstract target built
from the *current* mesh, so a run resumes on a different device count. A latest checkpoint that
cannot be restored (partially written, corrupted) is moved aside with a warning and the previous
one is used; a workdir whose checkpoints all fail is an error, never a silent fresh start. The
device count may change between save and restore; the process count may not (each process's
data position is its own), which is an error before anything is touched.
"""

import logging
import shutil
import time
from pathlib import Path

import grain
import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

QUARANTINE_DIR = "corrupted_checkpoints"


class ProcessCountMismatch(RuntimeError):
  """The checkpoint's data positions belong to a different number of processes."""


class NoRestorableCheckpoint(RuntimeError):
  """Checkpoints exist but none restores: refusing to start from scratch."""


class Checkpointer:
  """One CheckpointManager over `directory` with items state, data and metadata."""

  def __init__(self, directory: Path, max_to_keep: int):
    self.directory = Path(directory)
    self.max_to_keep = max_to_keep
    self.manager = self._make_manager()

  def _make_manager(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=self.max_to_keep, create=True, enable_async_checkpointing=True,
        cleanup_tmp_directories=True)
    return ocp.CheckpointManager(self.directory, options=options,
                                 item_names=("state", "data", "metadata"))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, data_iterator, metadata: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator),
        metadata=ocp.args.JsonSave(metadata)), force=True)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  def restore_latest(self, abstract_state, data_iterator):
    """(state, step, metadata) from the newest restorable checkpoint, or None if there is none.

    `data_iterator` is set to the saved position in place.
    """
    steps = self.steps()
    failures = []
    for step in reversed(steps):
      try:
        saved = self.manager.restore(step, args=ocp.args.Composite(
            metadata=ocp.args.JsonRestore())).metadata
      except Exception:  # pylint: disable=broad-except
        saved = None  # unreadable metadata: the full restore below decides
      if saved and saved.get("process_count", jax.process_count()) != jax.process_count():
        raise ProcessCountMismatch(
            f"checkpoint step {step} in {self.directory} was saved by "
            f"{saved['process_count']} processes, this run has {jax.process_count()}: the data "
            f"iterator positions are per process, so resume with {saved['process_count']}")
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_iterator),
            metadata=ocp.args.JsonRestore()))
      except Exception as error:  # pylint: disable=broad-except
        message = f"{type(error).__name__}: {str(error)[:300]}"
        failures.append(f"step {step}: {message}")
        logging.warning("checkpoint at step %d in %s cannot be restored (%s); moving it to %s "
                        "and falling back to the previous one", step, self.directory, message,
                        QUARANTINE_DIR)
        self._quarantine(step)
        continue
      return restored.state, step, restored.metadata
    if steps:
      raise NoRestorableCheckpoint(
          f"{self.directory} holds checkpoints {steps} but none can be restored ("
          + "; ".join(failures) + "); refusing to start from scratch: move the directory away "
          "to start a new run")
    return None

  def _quarantine(self, step: int) -> None:
    """Moves the unreadable step aside so later saves of that step do not collide."""
    self.manager.wait_until_finished()
    if jax.process_index() == 0:
      target = self.directory.parent / QUARANTINE_DIR
      target.mkdir(parents=True, exist_ok=True)
      for path in self.directory.iterdir():
        if path.name == str(step) or path.name.startswith(f"{step}."):
          shutil.move(str(path), str(target / f"{path.name}.{int(time.time())}"))
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"quarantine checkpoint {step}")
    self.manager.close()
    self.manager = self._make_manager()


def restore_params(directory: Path, abstract_state):
  """The params and model state of the newest checkpoint in a noembed workdir or checkpoint dir.

  Used by config.init_from: optimizer state and step start fresh.
  """
  directory = Path(directory)
  if (directory / "checkpoints").is_dir():
    directory = directory / "checkpoints"
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      read_only=True), item_names=("state", "data", "metadata"))
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"config.init_from={str(directory)!r} holds no checkpoint")
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state)))
  manager.close()
  return restored.state
