"""CANINE's input layer: hashed code point embeddings, a local character layer, downsampling.

Paper: Clark et al. 2022, "CANINE: Pre-training an Efficient Tokenization-Free Encoder for
Language Representation". Reference: transformers `CanineModel` (`CanineEmbeddings`, the
`initial_char_encoder` with local attention, `CharactersToMolecules`, `ConvProjection`), which
follows google-research/language `language/canine/modeling.py`. Differences from transformers:
the position table has `max_positions` rows (as the TF original; transformers sizes it by
`num_hash_buckets`, the same number at the defaults); sequence lengths that are not a multiple
of the downsampling rate and padding next to real characters in the upsampling conv are handled
as described in `noembed.nn.downsample`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from noembed.nn import downsample, transformer
from noembed.nn.embedders.base import Embedded

# CANINE's hash primes; the first K are used, in this order.
PRIMES = (31, 43, 59, 61, 73, 97, 103, 113, 137, 149, 157, 173, 181, 193, 211, 223)

_ENCODER_ACTIVATIONS = {"exact": "gelu", "tanh": "gelu_tanh"}


def hash_codepoints(codepoints_BxL: jax.Array, num_hash_functions: int,
                    num_buckets: int) -> jax.Array:
  """Bucket ids [B, L, K] int32: ((codepoint + 1) * prime_k) % num_buckets for the first K primes.

  Exact in int32 for every code point (0x110000 * 223 < 2**31).
  """
  if not 1 <= num_hash_functions <= len(PRIMES):
    raise ValueError(f"num_hash_functions must be in [1, {len(PRIMES)}], got "
                     f"{num_hash_functions}")
  primes_K = jnp.asarray(PRIMES[:num_hash_functions], jnp.int32)
  return ((codepoints_BxL.astype(jnp.int32)[..., None] + 1) * primes_K) % num_buckets


class CanineHashEmbedder(nn.Module):
  """inputs {ids [B, L] code points, mask [B, L], token_type_ids [B, L] optional} -> molecules.

  __call__ returns Embedded(x=molecules [B, ceil(L / rate), D], mask=molecule mask,
  aux={"char_states": [B, L, D] after the local layer, "char_mask": [B, L] bool}). Position 0
  must be [CLS]: it becomes molecule 0 unconvolved. `upsample` maps the model's molecule states
  back to characters (concat with char_states, conv, gelu, LayerNorm, dropout); CANINE's final
  character transformer layer after it belongs to the model, not to the embedder.

  Molecule k >= 1 holds character chunk k - 1 while the mask marks it real only when chunk k
  holds a real character (the reference's alignment); upsampling reads the molecule of the chunk
  holding the last real characters although the mask calls it padding, so the model must compute
  every molecule position (mask keys, never zero queries). The upsampling params exist only where
  a model calls `upsample` (setup creates submodule params on first use).
  """

  d_model: int
  num_heads: int
  mlp_dim: int
  num_hash_functions: int = 8
  num_buckets: int = 16384
  downsampling_rate: int = 4
  local_block_size: int = 128
  upsampling_kernel_size: int = 4
  type_vocab_size: int = 16
  max_positions: int = 16384
  gelu: str = "exact"
  layer_norm_eps: float = 1e-12
  dropout_rate: float = 0.1
  initializer_range: float = 0.02
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    if self.d_model % self.num_hash_functions:
      raise ValueError(f"d_model={self.d_model} must be a multiple of num_hash_functions="
                       f"{self.num_hash_functions} (one table of d_model / K per hash)")
    if self.gelu not in _ENCODER_ACTIVATIONS:
      raise ValueError(f"gelu must be one of {tuple(_ENCODER_ACTIVATIONS)}, got {self.gelu!r}")
    init = nn.initializers.normal(stddev=self.initializer_range)
    shard_size = self.d_model // self.num_hash_functions
    self.hash_embeddings = [
        nn.Embed(self.num_buckets, shard_size, dtype=self.dtype, param_dtype=self.param_dtype,
                 embedding_init=nn.with_logical_partitioning(init, ("buckets", "embed")))
        for _ in range(self.num_hash_functions)]
    self.position_embedding = nn.Embed(
        self.max_positions, self.d_model, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=nn.with_logical_partitioning(init, (None, "embed")))
    self.token_type_embedding = nn.Embed(
        self.type_vocab_size, self.d_model, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=nn.with_logical_partitioning(init, (None, "embed")))
    self.embedding_norm = nn.LayerNorm(
        epsilon=self.layer_norm_eps, use_fast_variance=False, dtype=self.dtype,
        param_dtype=self.param_dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))
    self.embedding_dropout = nn.Dropout(self.dropout_rate)
    self.char_encoder = transformer.EncoderLayer(
        d_model=self.d_model, num_heads=self.num_heads, mlp_dim=self.mlp_dim, flavour="bert",
        activation=_ENCODER_ACTIVATIONS[self.gelu], layer_norm_eps=self.layer_norm_eps,
        dropout_rate=self.dropout_rate, attention_block_size=self.local_block_size,
        dtype=self.dtype, param_dtype=self.param_dtype)
    self.chars_to_molecules = downsample.CharactersToMolecules(
        d_model=self.d_model, rate=self.downsampling_rate, gelu=self.gelu,
        layer_norm_eps=self.layer_norm_eps, initializer_range=self.initializer_range,
        dtype=self.dtype, param_dtype=self.param_dtype)
    self.molecules_to_chars = downsample.MoleculesToCharacters(
        d_model=self.d_model, rate=self.downsampling_rate,
        kernel_size=self.upsampling_kernel_size, gelu=self.gelu,
        layer_norm_eps=self.layer_norm_eps, dropout_rate=self.dropout_rate,
        initializer_range=self.initializer_range, dtype=self.dtype,
        param_dtype=self.param_dtype)

  def embed_characters(self, inputs, *, deterministic: bool) -> jax.Array:
    """Character embeddings [B, L, D] before the local layer (transformers `CanineEmbeddings`).

    Concat of the K hash tables' rows + token type + position, LayerNorm, dropout.
    """
    codepoints_BxL = inputs["ids"]
    num_chars = codepoints_BxL.shape[1]
    if num_chars > self.max_positions:
      raise ValueError(f"{num_chars} characters exceed max_positions={self.max_positions}")
    buckets_BxLxK = hash_codepoints(codepoints_BxL, self.num_hash_functions, self.num_buckets)
    x_BxLxD = jnp.concatenate(
        [embed(buckets_BxLxK[..., k]) for k, embed in enumerate(self.hash_embeddings)], axis=-1)
    token_type_ids_BxL = inputs.get("token_type_ids")
    if token_type_ids_BxL is None:
      token_type_ids_BxL = jnp.zeros_like(codepoints_BxL)
    x_BxLxD = x_BxLxD + self.token_type_embedding(token_type_ids_BxL)
    x_BxLxD = x_BxLxD + self.position_embedding(np.arange(num_chars))[None]
    x_BxLxD = self.embedding_norm(x_BxLxD)
    return self.embedding_dropout(x_BxLxD, deterministic=deterministic)

  def __call__(self, inputs, *, deterministic: bool) -> Embedded:
    char_mask_BxL = inputs["mask"].astype(bool)
    x_BxLxD = self.embed_characters(inputs, deterministic=deterministic)
    char_states_BxLxD = self.char_encoder(x_BxLxD, char_mask_BxL, deterministic=deterministic)
    molecules_BxMxD = self.chars_to_molecules(char_states_BxLxD)
    molecule_mask_BxM = downsample.downsample_mask(char_mask_BxL, self.downsampling_rate)
    return Embedded(x=molecules_BxMxD, mask=molecule_mask_BxM,
                    aux={"char_states": char_states_BxLxD, "char_mask": char_mask_BxL})

  def upsample(self, hidden_BxMxD: jax.Array, embedded: Embedded, *,
               deterministic: bool) -> jax.Array:
    """Molecule states [B, M, D] from the model -> per-character states [B, L, D]."""
    return self.molecules_to_chars(hidden_BxMxD, embedded.aux["char_states"],
                                   embedded.aux["char_mask"], deterministic=deterministic)
