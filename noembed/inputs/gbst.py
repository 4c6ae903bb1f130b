"""Charformer GBST: noembed.text.bytes ids into noembed.nn.embedders.gbst (Tay et al. 2022).

The front end and the masked units are ByT5's bytes (noembed.inputs.byte); only the embedder
differs, so byte and gbst runs see identical data and targets.
"""

import ml_collections

from noembed import inputs
from noembed.inputs import byte
from noembed.nn.embedders import gbst as gbst_embedder


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "max_length": 1024,            # bytes per example, eos included
      "add_eos": True,
      "vocab_rows": 384,             # 259 ids padded, as in ByT5
      "max_block_size": 4,           # M: blocks of 1..M bytes
      "downsample_factor": 2,        # d_s
      "conv_kernel_size": 5,
      "score_calibration": "none",   # or "position" (paper) or "score_attention" (Mesh-TF)
  })


# Same front end and masked units as ByT5 bytes.
encode = byte.encode
masked_units = byte.masked_units


def build_embedder(config, *, d_model, dtype, param_dtype):
  return gbst_embedder.GBSTEmbedder(
      d_model=d_model, vocab_rows=config.vocab_rows, max_block_size=config.max_block_size,
      downsample_factor=config.downsample_factor, conv_kernel_size=config.conv_kernel_size,
      score_calibration=config.score_calibration, dtype=dtype, param_dtype=param_dtype)


inputs.register(inputs.InputMethod(
    name="gbst", default_config=default_config, encode=encode,
    build_embedder=build_embedder, masked_units=masked_units))
