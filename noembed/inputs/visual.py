"""VTR rendered text: noembed.text.render slices into noembed.nn.embedders.visual.

Salesky et al. 2021 (esalesky/visrep). Defaults are visrep's (8 pt, 3 px pad, window 30,
stride 20) and its "1layer" embedder with batch norm, the best setting on most MTTT pairs. The
masked-unit objective is a binarised masked-slice reconstruction in the spirit of PIXEL
(Rust et al. 2023): a masked slice is blanked (all 255) and each of its H * W pixels is
predicted as ink (< 128) or background.
"""

import jax.numpy as jnp
import ml_collections

from noembed import inputs
from noembed.nn.embedders import visual as visual_embedder
from noembed.text import render as render_text

BLANK = render_text.BACKGROUND
INK_THRESHOLD = 128


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "font_size": 8,         # points at 120 dpi, as visrep
      "height": 0,            # pixels; 0: visrep's formula (21 for 8 pt NotoSans)
      "pad": 3,
      "window": 30,
      "stride": 20,
      "max_slices": 256,
      "font_dir": "",         # "": Debian's Noto directories
      "num_workers": 0,       # render processes; 0: in the calling process
      "variant": "conv1",     # "direct" | "conv1" | "conv2"
      "channels": 1,          # visrep's conv blocks have one channel
      "batch_norm": True,     # visrep --image-embed-normalize
      "bridge_relu": False,   # visrep --image-bridge-relu
      "positions": "sinusoidal",
  })


def slice_height(config) -> int:
  """The configured line height, resolving 0 to visrep's formula for the font size."""
  if config.height:
    return config.height
  return render_text.line_height(config.font_size, config.pad, font_dir=config.font_dir)


def encode(texts, config, stats=None):
  slices, mask = render_text.render(
      texts, font_size=config.font_size, height=slice_height(config), window=config.window,
      stride=config.stride, max_slices=config.max_slices, pad=config.pad,
      font_dir=config.font_dir, num_workers=config.num_workers, stats=stats)
  return {"slices": slices, "mask": mask}


def build_embedder(config, *, d_model, dtype, param_dtype):
  return visual_embedder.VisualEmbedder(
      variant=config.variant, channels=config.channels, batch_norm=config.batch_norm,
      bridge_relu=config.bridge_relu, positions=config.positions, d_model=d_model,
      dtype=dtype, param_dtype=param_dtype)


def masked_units(config):
  pixels = slice_height(config) * config.window

  def targets(batch):
    slices = batch["slices"]
    return (slices < INK_THRESHOLD).astype(jnp.int32).reshape(*slices.shape[:2], pixels)

  return inputs.MaskedUnits(
      key="slices",
      maskable=lambda batch: batch["mask"].astype(bool),
      corrupt=lambda batch, masked: {
          **batch, "slices": jnp.where(masked[..., None, None], jnp.uint8(BLANK),
                                       batch["slices"])},
      targets=targets,
      num_heads=pixels,
      vocab_size=2,
      unit_bytes=None,
  )


inputs.register(inputs.InputMethod(
    name="visual", default_config=default_config, encode=encode,
    build_embedder=build_embedder, masked_units=masked_units))
