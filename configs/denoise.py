"""Denoising seq2seq: an encoder-decoder restores texts of the bundled corpus from a noised copy
(ByT5 §6's add/drop/mutate noise at rate 0.1), trained with teacher forcing and evaluated by
greedy decoding (exact match, greedy byte accuracy) besides loss and bits per byte.

  python launch.py --config configs/denoise.py --workdir workdirs/denoise

Variants: `configs/denoise.py:size=tiny` (seconds; used by tests). The source may go through any
input method; the target is always ByT5 bytes:
  python launch.py --config configs/denoise.py --config.embedder.name=canine_hash --dry_run
Other noises: --config.task.noise=swap --config.task.noise_rate=0.1 (noembed.text.noise).
"""

from configs import common


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, size="small")
  config = common.base_config(embedder="byte", model="encoder_decoder", task="seq2seq")
  config.embedder.byte.max_length = 256
  config.task.targets_length = 256
  config.model.update(d_model=128, num_encoder_layers=3, num_decoder_layers=1, num_heads=4,
                      mlp_dim=512, dropout_rate=0.0)
  config.optimizer.update(learning_rate=3e-3, warmup_steps=50, weight_decay=0.01)
  common.set_cadence(config, args.size)
  if args.size == "tiny":
    config.embedder.byte.max_length = 32
    config.task.targets_length = 32
    config.model.update(d_model=32, num_encoder_layers=1, num_decoder_layers=1, num_heads=2,
                        mlp_dim=64)
  return config
