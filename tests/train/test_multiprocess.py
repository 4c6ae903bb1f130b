"""Two JAX processes on 127.0.0.1 with CPU (gloo) collectives train, checkpoint and resume."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def _run_two_processes(workdir: Path, data_dir: str, num_steps: int, *extra_flags):
  port = _free_port()
  processes = []
  for process_id in range(2):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", NOEMBED_DATA_DIR=data_dir)
    processes.append(subprocess.Popen(
        [sys.executable, str(ROOT / "launch.py"), "--config",
         "configs/quickstart.py:size=tiny", "--workdir", str(workdir),
         f"--config.num_train_steps={num_steps}", "--config.checkpoint_every_steps=2",
         "--config.eval_every_steps=100", "--config.mesh.data=2", "--config.mesh.model=2",
         f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
         f"--process_id={process_id}", *extra_flags],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  outputs = []
  for process in processes:
    output, _ = process.communicate(timeout=600)
    outputs.append(output)
    assert process.returncode == 0, output[-3000:]
  return outputs


@pytest.mark.slow
def test_two_processes_train_checkpoint_and_resume(tmp_path, data_dir):
  workdir = tmp_path / "run"
  # A full validation pass: the processes' packed shards end after different batch counts.
  outputs = _run_two_processes(workdir, data_dir, 4, "--config.eval_steps=0")
  assert "over 4 devices, 2 process(es)" in outputs[0]
  assert "step 4 validation" in outputs[0]
  step_dir = workdir / "checkpoints" / "4"
  assert sorted(path.name for path in (step_dir / "data").glob("*.json")) == [
      "process_0-of-2.json", "process_1-of-2.json"]
  outputs = _run_two_processes(workdir, data_dir, 6)
  assert "resumed from step 4" in outputs[0]
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  steps = [record["step"] for record in records if record["split"] == "train"]
  assert steps == [1, 2, 3, 4, 5, 6]
  assert all(record["loss"] == record["loss"] for record in records)  # no NaN
