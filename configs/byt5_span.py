"""ByT5-style span corruption (Xue et al. 2022): a small byte-level encoder-decoder pre-trained
on the bundled corpus with T5's random spans (noise density 0.15, mean span 20 bytes).

  python launch.py --config configs/byt5_span.py --workdir workdirs/byt5_span

Variants: `configs/byt5_span.py:size=tiny` (seconds; used by tests). GBST in front of the
encoder (the other input method that reads ByT5 bytes):
  python launch.py --config configs/byt5_span.py --config.embedder.name=gbst --dry_run
The texts are packed to the most bytes whose corrupted inputs fit the encoder's max_length, and
the targets length follows (task.pack_bytes = task.targets_length = 0, T5's random_spans_helper).
"""

from configs import common


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, size="small")
  config = common.base_config(embedder="byte", model="encoder_decoder", task="span_corruption")
  config.embedder.byte.max_length = 256
  config.embedder.gbst.max_length = 256
  # ByT5's encoder is three times as deep as its decoder.
  config.model.update(d_model=128, num_encoder_layers=3, num_decoder_layers=1, num_heads=4,
                      mlp_dim=512, dropout_rate=0.0)
  config.optimizer.update(learning_rate=3e-3, warmup_steps=50, weight_decay=0.01)
  common.set_cadence(config, args.size)
  if args.size == "tiny":
    config.embedder.byte.max_length = 64
    config.embedder.gbst.max_length = 64
    config.model.update(d_model=32, num_encoder_layers=1, num_decoder_layers=1, num_heads=2,
                        mlp_dim=64)
  return config
