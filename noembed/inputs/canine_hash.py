"""CANINE: noembed.text.codepoints ids into noembed.nn.embedders.canine_hash (Clark et al. 2022).

Masked units are characters; each masked character predicts its K hash buckets (K softmaxes over
num_buckets), the same hashes the embedder looks up. This is noembed's objective, not the
paper's (CANINE-S predicts subword ids, CANINE-C the characters autoregressively). The buckets do
not determine the text, so there is no exact bits_per_byte.
"""

import jax.numpy as jnp
import ml_collections

from noembed import inputs
from noembed.nn.embedders import canine_hash as canine_embedder
from noembed.text import codepoints


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "max_length": 2048,           # code points per example, [CLS] and [SEP] included
      "num_hash_functions": 8,
      "num_buckets": 16384,
      "downsampling_rate": 4,
      "local_block_size": 128,      # local attention of the initial character layer
      "upsampling_kernel_size": 4,
      "type_vocab_size": 16,
      "max_positions": 16384,
      "gelu": "exact",              # "exact" as transformers, "tanh" as the original TF code
      "num_heads": 0,               # of the initial character layer; 0 means d_model // 64
                                    # (CANINE's 768 / 12), at least 1
      "mlp_dim": 0,                 # of the initial character layer; 0 means 4 * d_model
      "dropout_rate": 0.1,
  })


def encode(texts, config, stats=None):
  ids, mask, token_type_ids = codepoints.encode(texts, config.max_length, stats=stats)
  return {"ids": ids, "mask": mask, "token_type_ids": token_type_ids}


def build_embedder(config, *, d_model, dtype, param_dtype):
  return canine_embedder.CanineHashEmbedder(
      d_model=d_model, num_heads=config.num_heads or max(d_model // 64, 1), mlp_dim=config.mlp_dim or 4 * d_model,
      num_hash_functions=config.num_hash_functions, num_buckets=config.num_buckets,
      downsampling_rate=config.downsampling_rate, local_block_size=config.local_block_size,
      upsampling_kernel_size=config.upsampling_kernel_size,
      type_vocab_size=config.type_vocab_size, max_positions=config.max_positions,
      gelu=config.gelu, dropout_rate=config.dropout_rate, dtype=dtype, param_dtype=param_dtype)


def _maskable(batch):
  ids = batch["ids"]
  return batch["mask"].astype(bool) & (ids != codepoints.CLS) & (ids != codepoints.SEP)


def masked_units(config):
  return inputs.MaskedUnits(
      key="ids",
      maskable=_maskable,
      corrupt=lambda batch, masked: {
          **batch, "ids": jnp.where(masked, codepoints.MASK, batch["ids"])},
      targets=lambda batch: canine_embedder.hash_codepoints(
          batch["ids"], config.num_hash_functions, config.num_buckets),
      num_heads=config.num_hash_functions,
      vocab_size=config.num_buckets,
      unit_bytes=None,
  )


inputs.register(inputs.InputMethod(
    name="canine_hash", default_config=default_config, encode=encode,
    build_embedder=build_embedder, masked_units=masked_units))
