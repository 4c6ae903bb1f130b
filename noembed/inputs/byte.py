"""ByT5 bytes: noembed.text.bytes ids into a 384-row embedding table (Xue et al. 2022)."""

import jax.numpy as jnp
import ml_collections

from noembed import inputs
from noembed.nn.embedders.table import TableEmbedder
from noembed.text import bytes as byte_text

# ByT5 has no mask token; its first span sentinel (258) stands for a masked byte.
MASK_ID = byte_text.sentinel(0)


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "max_length": 512,      # bytes per example, eos included
      "add_eos": True,
      "vocab_rows": 384,      # 259 ids padded, as in ByT5
  })


def encode(texts, config, stats=None):
  ids, mask = byte_text.encode(texts, config.max_length, add_eos=config.add_eos, stats=stats)
  return {"ids": ids, "mask": mask}


def build_embedder(config, *, d_model, dtype, param_dtype):
  return TableEmbedder(
      num_rows=config.vocab_rows, d_model=d_model, dtype=dtype, param_dtype=param_dtype)


def masked_units(config):
  del config
  return inputs.MaskedUnits(
      key="ids",
      maskable=lambda batch: batch["ids"] >= byte_text.OFFSET,
      corrupt=lambda batch, masked: {**batch, "ids": jnp.where(masked, MASK_ID, batch["ids"])},
      targets=lambda batch: batch["ids"][..., None],
      num_heads=1,
      vocab_size=byte_text.VOCAB_SIZE,
      unit_bytes=lambda batch: (batch["ids"] >= byte_text.OFFSET).astype(jnp.int32),
  )


inputs.register(inputs.InputMethod(
    name="byte", default_config=default_config, encode=encode,
    build_embedder=build_embedder, masked_units=masked_units))
