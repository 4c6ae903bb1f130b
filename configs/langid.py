"""Language or script identification on the bundled corpus, with any input method.

  python launch.py --config configs/langid.py --workdir workdirs/langid
  python launch.py --config configs/langid.py:label=language --config.embedder.name=projection \
      --workdir workdirs/langid_projection

Variants: `label=script|language`, `size=small|tiny` (tiny: seconds, for tests).
"""

from configs import common


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, size="small", label="script")
  if args.label not in ("script", "language"):
    raise ValueError(f"configs/langid.py: label must be 'script' or 'language', got "
                     f"{args.label!r}")
  config = common.base_config(embedder="byte", model="encoder", task="classification")
  config.task.label_field = args.label
  config.embedder.byte.max_length = 256
  config.model.update(d_model=128, num_layers=2, num_heads=4, mlp_dim=512, dropout_rate=0.1)
  config.optimizer.update(learning_rate=1e-3, warmup_steps=50)
  common.set_cadence(config, args.size)
  if args.size == "tiny":
    config.embedder.byte.max_length = 32
    config.model.update(d_model=32, num_layers=1, num_heads=2, mlp_dim=64)
  return config
