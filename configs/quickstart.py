"""Quickstart: a small byte-level encoder trained with masked-byte prediction on the bundled
multilingual corpus (UDHR samples from gflanguages), on CPU in a few minutes.

  python launch.py --config configs/quickstart.py --workdir workdirs/quickstart

Variants: `configs/quickstart.py:size=tiny` (seconds; used by tests). Any input method:
  python launch.py --config configs/quickstart.py --config.embedder.name=gbst --dry_run
"""

from configs import common


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, size="small")
  config = common.base_config(embedder="byte", model="encoder", task="mlm")
  config.task.pack_bytes = 127           # + eos = 128 byte ids
  config.embedder.byte.max_length = 128
  config.model.update(d_model=128, num_layers=2, num_heads=4, mlp_dim=512, dropout_rate=0.0)
  config.optimizer.update(learning_rate=3e-3, warmup_steps=50, weight_decay=0.01)
  common.set_cadence(config, args.size)
  if args.size == "tiny":
    config.task.pack_bytes = 31
    config.embedder.byte.max_length = 32
    config.model.update(d_model=32, num_layers=1, num_heads=2, mlp_dim=64)
  return config
