"""Resume after SIGTERM, restore on another device count, fall back past a corrupted checkpoint."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from noembed import train
from noembed.train import checkpoint
from tests.run_metrics import read_metrics

NUM_STEPS = 8


def _config(tiny_config, **overrides):
  config = tiny_config.copy_and_resolve_references()
  config.num_train_steps = NUM_STEPS
  config.eval_every_steps = 100
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
  """Train losses of an uninterrupted 8-step run on all 8 devices."""
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  config = quickstart.get_config("size=tiny")
  config.data.data_dir = data_dir
  config.model.dropout_rate = 0.1
  config.num_train_steps = NUM_STEPS
  config.eval_every_steps = 100
  workdir = tmp_path_factory.mktemp("uninterrupted")
  train.run(config, workdir)
  return {step: record["train_loss"] for step, record in read_metrics(workdir).items()}


def _send_sigterm_after_step(workdir: Path, step: int) -> threading.Thread:
  """Sends SIGTERM to this process once metrics.jsonl shows `step` (the loop is mid-run)."""

  def watch():
    path = workdir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
      if path.exists() and any(f'"step": {step},' in line and '"train"' in line
                               for line in path.read_text().splitlines()):
        os.kill(os.getpid(), signal.SIGTERM)
        return
      time.sleep(0.01)

  thread = threading.Thread(target=watch, daemon=True)
  thread.start()
  return thread


def test_sigterm_then_resume_matches_uninterrupted(tiny_config, tmp_path, uninterrupted):
  config = _config(tiny_config, checkpoint_every_steps=100)
  watcher = _send_sigterm_after_step(tmp_path, 3)
  first = train.run(config, tmp_path)
  watcher.join()
  assert first.stopped_by == "SIGTERM"
  stopped_at = first.step
  assert 3 <= stopped_at < NUM_STEPS
  assert checkpoint.Checkpointer(tmp_path / "checkpoints", 3).steps() == [stopped_at]
  second = train.run(config, tmp_path)
  assert second.stopped_by == "done" and second.step == NUM_STEPS
  resumed = {step: record["train_loss"] for step, record in read_metrics(tmp_path).items()}
  for step in range(stopped_at + 1, NUM_STEPS + 1):
    assert resumed[step] == pytest.approx(uninterrupted[step], abs=1e-6), step


def test_save_on_8_devices_restore_on_2_and_continue(tiny_config, tmp_path, uninterrupted):
  config = _config(tiny_config, checkpoint_every_steps=100)
  watcher = _send_sigterm_after_step(tmp_path, 4)
  stopped_at = train.run(config, tmp_path).step
  watcher.join()
  assert stopped_at < NUM_STEPS
  config.mesh.update({"data": 2, "fsdp": 1, "model": 1})
  result = train.run(config, tmp_path)
  assert result.step == NUM_STEPS
  resumed = {step: record["train_loss"] for step, record in read_metrics(tmp_path).items()}
  for step in range(stopped_at + 1, NUM_STEPS + 1):
    assert resumed[step] == pytest.approx(uninterrupted[step], abs=1e-5), step


def test_corrupted_latest_checkpoint_falls_back_to_previous(tiny_config, tmp_path, uninterrupted,
                                                            caplog):
  config = _config(tiny_config, checkpoint_every_steps=3)
  train.run(config, tmp_path)
  assert checkpoint.Checkpointer(tmp_path / "checkpoints", 3).steps() == [3, 6, 8]
  state_files = [path for path in (tmp_path / "checkpoints" / "8" / "state").rglob("*")
                 if path.is_file() and path.stat().st_size > 0]
  for path in state_files:  # garble every file of the latest state
    path.write_bytes(b"\x00garbage" * 4)
  with caplog.at_level("WARNING"):
    result = train.run(config, tmp_path)
  assert "checkpoint at step 8" in caplog.text and "cannot be restored" in caplog.text
  assert result.step == NUM_STEPS
  assert list((tmp_path / checkpoint.QUARANTINE_DIR).iterdir())
  resumed = {step: record["train_loss"] for step, record in read_metrics(tmp_path).items()}
  for step in (7, 8):  # retrained from the step-6 checkpoint
    assert resumed[step] == pytest.approx(uninterrupted[step], abs=1e-6), step


def test_all_checkpoints_unreadable_is_an_error_not_a_fresh_start(tiny_config, tmp_path):
  config = _config(tiny_config, num_train_steps=3, checkpoint_every_steps=3)
  train.run(config, tmp_path)
  for path in (tmp_path / "checkpoints" / "3" / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"junk")
  with pytest.raises(checkpoint.NoRestorableCheckpoint, match="refusing to start from scratch"):
    train.run(config, tmp_path)


def test_init_from_starts_from_the_saved_params(tiny_config, tmp_path):
  config = _config(tiny_config, num_train_steps=4, checkpoint_every_steps=4)
  train.run(config, tmp_path / "source")
  source_eval = read_metrics(tmp_path / "source", "validation")[4]
  config = _config(tiny_config, num_train_steps=1, checkpoint_every_steps=4)
  config.init_from = str(tmp_path / "source")
  train.run(config, tmp_path / "finetune")
  start_eval = read_metrics(tmp_path / "finetune", "validation")[0]
  # Same params and the same eval masking (rng from the seed): the same validation loss.
  assert start_eval["loss"] == pytest.approx(source_eval["loss"], abs=1e-6)
  assert start_eval["loss"] != pytest.approx(read_metrics(tmp_path / "source",
                                                          "validation")[0]["loss"], abs=1e-3)


def test_restore_with_another_process_count_is_refused_untouched(tmp_path):
  import grain  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  iterator = iter(grain.MapDataset.range(10).to_iter_dataset())
  saver = checkpoint.Checkpointer(tmp_path / "checkpoints", 3)
  state = {"w": jnp.ones((2,))}
  saver.save(1, state, iterator, {"process_count": 2})
  saver.close()
  restorer = checkpoint.Checkpointer(tmp_path / "checkpoints", 3)
  with pytest.raises(checkpoint.ProcessCountMismatch, match="saved by 2 processes"):
    restorer.restore_latest({"w": jnp.zeros((2,))}, iterator)
  assert restorer.steps() == [1]  # nothing was moved aside
