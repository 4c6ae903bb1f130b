"""Metric outputs: workdir/metrics.jsonl, TensorBoard event files, a progress bar or lines."""

import json
import math
import sys
import time
from pathlib import Path

import tqdm
from tensorboardX import SummaryWriter


class MetricsWriter:
  """Writes one JSON object per logged step and split (always `step` and `split`)."""

  def __init__(self, workdir: Path, enabled: bool):
    self.enabled = enabled
    self.path = Path(workdir) / "metrics.jsonl"
    self.tensorboard_dir = Path(workdir) / "tensorboard"
    if enabled:
      self.file = self.path.open("a")
      self.tensorboard = SummaryWriter(str(self.tensorboard_dir))

  def write(self, step: int, split: str, values: dict[str, float]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "split": split}
    record.update({key: float(value) for key, value in values.items()})
    self.file.write(json.dumps(record) + "\n")
    self.file.flush()
    for key, value in values.items():
      if math.isfinite(float(value)):
        self.tensorboard.add_scalar(f"{split}/{key}", float(value), int(step))
    self.tensorboard.flush()

  def close(self) -> None:
    if self.enabled:
      self.file.close()
      self.tensorboard.close()


class Progress:
  """A tqdm bar with rate and ETA on a terminal, plain log lines otherwise."""

  def __init__(self, start_step: int, total_steps: int, enabled: bool):
    self.enabled = enabled
    self.interactive = enabled and sys.stderr.isatty()
    self.total = total_steps
    self.start_time = time.time()
    self.start_step = start_step
    if self.interactive:
      self.bar = tqdm.tqdm(total=total_steps, initial=start_step, unit="step",
                           dynamic_ncols=True)

  def update(self, step: int, values: dict[str, float]) -> None:
    if not self.enabled:
      return
    summary = {key: f"{values[key]:.4g}" for key in ("loss", "bits_per_byte") if key in values}
    if self.interactive:
      self.bar.update(step - self.bar.n)
      self.bar.set_postfix(summary)
      return
    elapsed = time.time() - self.start_time
    done = step - self.start_step
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    parts = " ".join(f"{key}={value}" for key, value in summary.items())
    print(f"step {step}/{self.total} {parts} {rate:.2f} step/s eta {eta:.0f}s", flush=True)

  def write(self, message: str) -> None:
    if self.interactive:
      self.bar.write(message)
    elif self.enabled:
      print(message, flush=True)

  def close(self) -> None:
    if self.interactive:
      self.bar.close()
