"""Bad configs fail before any work, with a message naming the key and exit status 2."""

import os
import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest

from configs import quickstart
from noembed.train import config_check

ROOT = Path(__file__).resolve().parents[2]


def _launch(*args, tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, str(ROOT / "launch.py"), "--config", "configs/quickstart.py:size=tiny",
       "--workdir", str(tmp_path / "workdir"), *args],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--config.batch_sizee=8"], "batch_sizee"),
    (["--config.model.num_layer=2"], "num_layer"),
    (["--config.batch_size=eight"], "batch_size"),
    (["--config.embedder.name=wordpiece"], "wordpiece"),
    (["--config.batch_size=6", "--config.mesh.data=4", "--config.mesh.model=2"],
     "config.batch_size=6 does not divide over the batch mesh axes data x fsdp = 4"),
])
def test_bad_config_exits_2_naming_the_key(args, message, tmp_path):
  result = _launch(*args, tmp_path=tmp_path)
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in result.stderr
  assert "step 1" not in result.stdout  # nothing trained
  assert not (tmp_path / "workdir" / "checkpoints").exists()  # nothing built


def test_validate_names_missing_and_mistyped_keys():
  config = quickstart.get_config("size=tiny")
  config.validate_me = 1
  with pytest.raises(config_check.ConfigError, match="config.validate_me"):
    config_check.validate(config)
  config = quickstart.get_config("size=tiny")
  del config["seed"]
  with pytest.raises(config_check.ConfigError, match="'seed'"):
    config_check.validate(config)
  config = quickstart.get_config("size=tiny")
  config.dtype = "float8"
  with pytest.raises(config_check.ConfigError, match="config.dtype"):
    config_check.validate(config)
  config = quickstart.get_config("size=tiny")
  with config.unlocked():
    config.embedder.byte.max_len = 3
  with pytest.raises(config_check.ConfigError, match="config.embedder.byte.max_len"):
    config_check.validate(config)
  config = quickstart.get_config("size=tiny")
  config.embedder.byte = ml_collections.ConfigDict({"max_length": "long"})
  with pytest.raises(config_check.ConfigError, match="config.embedder.byte.max_length"):
    config_check.validate(config)


def test_dry_run_prints_parameter_table(tmp_path):
  result = _launch("--dry_run", tmp_path=tmp_path)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.strip().splitlines()
  assert lines[-1].startswith("total parameters: ")
  total = int(lines[-1].split(": ")[1])
  rows = {line.split()[0]: int(line.split()[-2].replace(",", "")) for line in lines
          if line.split()[0] in ("embedder", "encoder", "output")}
  assert sum(rows.values()) == total
  # The byte embedding: 384 rows x d_model 32.
  assert rows["embedder"] == 384 * 32
  assert not (tmp_path / "workdir").exists()
