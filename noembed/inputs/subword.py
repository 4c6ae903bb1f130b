"""Subword baseline: noembed.text.subword pieces into noembed.nn.embedders.table.

With `model_file=""` the sentencepiece model is trained on the bundled corpus's train split
(noembed.data.udhr) on first use and cached as
`$NOEMBED_CACHE/subword-{model_type}-{vocab_size}-{coverage}-{corpus digest}.model`
(NOEMBED_CACHE defaults to ~/.cache/noembed); the digest of the training texts keeps a model
from being reused after the corpus changes. Training is deterministic and the file is written
atomically, so processes that race to create it agree.
"""

import functools
import hashlib
import os

import jax.numpy as jnp
import ml_collections

from noembed import inputs
from noembed.data import udhr
from noembed.nn.embedders.table import TableEmbedder
from noembed.text import subword as subword_text


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "model_type": "unigram",       # or "bpe"
      "vocab_size": 8000,            # pieces, the 4 reserved ids and 256 byte pieces included
      "character_coverage": 0.98,    # sentencepiece's minimum; rarer characters become bytes
      "max_length": 256,             # pieces per example, eos included
      "add_eos": True,
      "model_file": "",              # "" = train on the bundled corpus and cache
  })


def cache_dir() -> str:
  return os.environ.get("NOEMBED_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                         "noembed")


@functools.lru_cache(maxsize=None)
def _load(model_file: str, model_type: str, vocab_size: int,
          character_coverage: float) -> subword_text.SubwordModel:
  if model_file:
    return subword_text.SubwordModel(model_file)
  texts = udhr.load_texts("train")
  digest = hashlib.sha256("\0".join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:12]
  prefix = os.path.join(
      cache_dir(), f"subword-{model_type}-{vocab_size}-{character_coverage:g}-{digest}")
  if not os.path.exists(prefix + ".model"):
    subword_text.train(texts, vocab_size=vocab_size, model_type=model_type,
                       model_prefix=prefix, character_coverage=character_coverage)
  return subword_text.SubwordModel(prefix + ".model")


def load_model(config: ml_collections.ConfigDict) -> subword_text.SubwordModel:
  """The configured model: config.model_file, or the cached one trained on the corpus."""
  return _load(config.model_file, config.model_type, config.vocab_size,
               float(config.character_coverage))


def encode(texts, config, stats=None):
  ids, mask, unit_bytes = load_model(config).encode(
      texts, config.max_length, add_eos=config.add_eos, stats=stats)
  return {"ids": ids, "mask": mask, "unit_bytes": unit_bytes}


def build_embedder(config, *, d_model, dtype, param_dtype):
  return TableEmbedder(
      num_rows=load_model(config).vocab_size, d_model=d_model, dtype=dtype,
      param_dtype=param_dtype)


def masked_units(config):
  return inputs.MaskedUnits(
      key="ids",
      maskable=lambda batch: batch["ids"] > subword_text.MASK_ID,
      corrupt=lambda batch, masked: {
          **batch, "ids": jnp.where(masked, subword_text.MASK_ID, batch["ids"])},
      targets=lambda batch: batch["ids"][..., None],
      num_heads=1,
      vocab_size=load_model(config).vocab_size,
      unit_bytes=lambda batch: batch["unit_bytes"],
  )


inputs.register(inputs.InputMethod(
    name="subword", default_config=default_config, encode=encode,
    build_embedder=build_embedder, masked_units=masked_units))
