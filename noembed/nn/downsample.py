"""CANINE's strided-convolution downsampling of characters to molecules, and the upsampling back.

Paper: Clark et al. 2022, "CANINE: Pre-training an Efficient Tokenization-Free Encoder for
Language Representation". Reference: transformers `CanineModel` (`CharactersToMolecules`,
`_downsample_attention_mask`, `_repeat_molecules`, `ConvProjection`), which follows
google-research/language `language/canine/modeling.py`.

Alignment, as in the reference: molecule 0 is the [CLS] character's state; molecule k >= 1 is the
convolution of character chunk k - 1 (chunk c = characters [c * rate, (c + 1) * rate)); the
convolution of the last chunk is dropped. The molecule mask is the max-pooled character mask, so
molecule k is real when chunk k (not k - 1) holds a real character: every real molecule is the
convolution of real characters only. Upsampling gives each character the molecule of its own
chunk, and the characters of the last chunk, which has no molecule, the last molecule.

Sequence lengths that are not a multiple of `rate` behave as the reference does on the input
padded to the next multiple: ceil(L / rate) molecules (the reference gives floor(L / rate), which
for L < rate leaves the molecule mask one shorter than the molecules).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

GELU_FORMS = ("exact", "tanh")


def apply_gelu(x: jax.Array, form: str) -> jax.Array:
  """GELU in `form` "exact" (erf, as in transformers) or "tanh" (as in the original TF code)."""
  if form not in GELU_FORMS:
    raise ValueError(f"gelu form must be one of {GELU_FORMS}, got {form!r}")
  return jax.nn.gelu(x, approximate=form == "tanh")


def num_molecules(num_chars: int, rate: int) -> int:
  """Molecules for `num_chars` characters: ceil(num_chars / rate), [CLS] included."""
  return -(-num_chars // rate)


def downsample_mask(char_mask_BxL: jax.Array, rate: int) -> jax.Array:
  """The molecule mask [B, ceil(L / rate)]: True where the chunk holds a real character."""
  batch, num_chars = char_mask_BxL.shape
  molecules = num_molecules(num_chars, rate)
  padded_BxR = jnp.pad(char_mask_BxL.astype(bool), ((0, 0), (0, molecules * rate - num_chars)))
  return padded_BxR.reshape(batch, molecules, rate).any(axis=-1)


def repeat_molecules(molecules_BxMxD: jax.Array, num_chars: int, rate: int,
                     molecule_mask_BxM: jax.Array | None = None) -> jax.Array:
  """Each character's molecule [B, L, D]: its own chunk's, the last for the last chunk.

  Equals the reference `_repeat_molecules` on a buffer padded to a multiple of `rate`, cut to
  `num_chars`; the [CLS] molecule is used only when there is no other (L <= rate). With a
  molecule mask, "the last" is each example's last real molecule, so appending padding never
  changes which molecule a real character reads (the reference would give the characters of a
  padded example's last real chunk that chunk's own molecule, not the last one; identical when
  there is no padding).
  """
  molecules = molecules_BxMxD.shape[1]
  if molecules != num_molecules(num_chars, rate):
    raise ValueError(f"{molecules} molecules do not match {num_chars} characters at rate {rate}; "
                     f"expected {num_molecules(num_chars, rate)}")
  molecule_of_char_L = np.minimum(np.arange(num_chars) // rate + 1, molecules - 1)
  if molecule_mask_BxM is None:
    return jnp.take(molecules_BxMxD, molecule_of_char_L, axis=1)
  last_real_B = jnp.maximum(molecule_mask_BxM.astype(jnp.int32).sum(1) - 1, 0)
  molecule_of_char_BxL = jnp.minimum(molecule_of_char_L[None], last_real_B[:, None])
  return jnp.take_along_axis(molecules_BxMxD, molecule_of_char_BxL[..., None], axis=1)


def _conv_kernel_init(stddev: float):
  return nn.with_logical_partitioning(
      nn.initializers.normal(stddev=stddev), (None, "features", "embed"))


def _layer_norm(epsilon: float, dtype, param_dtype, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=epsilon, use_fast_variance=False, dtype=dtype, param_dtype=param_dtype,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
      name=name)


class CharactersToMolecules(nn.Module):
  """chars [B, L, D] -> molecules [B, ceil(L / rate), D]: [CLS] bypass + strided conv, gelu, LN.

  The reference `CharactersToMolecules`: conv with kernel = stride = rate ('VALID'), gelu, the
  last conv output dropped, the [CLS] character state prepended unconvolved, then LayerNorm (no
  dropout).
  """

  d_model: int
  rate: int = 4
  gelu: str = "exact"
  layer_norm_eps: float = 1e-12
  initializer_range: float = 0.02
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, chars_BxLxD: jax.Array) -> jax.Array:
    num_chars = chars_BxLxD.shape[1]
    molecules = num_molecules(num_chars, self.rate)
    # Zeros complete the last chunk; its conv output is the one dropped, so they never show.
    padded_BxRxD = jnp.pad(chars_BxLxD, ((0, 0), (0, molecules * self.rate - num_chars), (0, 0)))
    conv = nn.Conv(
        self.d_model, kernel_size=(self.rate,), strides=(self.rate,), padding="VALID",
        dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=_conv_kernel_init(self.initializer_range),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        name="conv")
    chunks_BxMxD = apply_gelu(conv(padded_BxRxD), self.gelu)
    cls_Bx1xD = chars_BxLxD[:, :1].astype(chunks_BxMxD.dtype)
    molecules_BxMxD = jnp.concatenate([cls_Bx1xD, chunks_BxMxD[:, :-1]], axis=1)
    return _layer_norm(self.layer_norm_eps, self.dtype, self.param_dtype, "norm")(molecules_BxMxD)


class MoleculesToCharacters(nn.Module):
  """(molecules [B, M, D], chars [B, L, D], char mask [B, L]) -> [B, L, D].

  The reference `ConvProjection` after `_repeat_molecules`: concat [chars, repeated molecules],
  conv with kernel `kernel_size`, stride 1, 'SAME' (for an even kernel one zero before and the
  rest after, as TF pads), gelu, LayerNorm, dropout. One deviation, for padding invariance: the
  concat is zeroed at padding characters, so the conv at the last real characters sees zeros
  where the reference sees padding states (identical when there is no padding).
  """

  d_model: int
  rate: int = 4
  kernel_size: int = 4
  gelu: str = "exact"
  layer_norm_eps: float = 1e-12
  dropout_rate: float = 0.1
  initializer_range: float = 0.02
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, molecules_BxMxD: jax.Array, chars_BxLxD: jax.Array, char_mask_BxL: jax.Array,
               *, deterministic: bool) -> jax.Array:
    num_chars = chars_BxLxD.shape[1]
    molecule_mask_BxM = downsample_mask(char_mask_BxL.astype(bool), self.rate)
    repeated_BxLxD = repeat_molecules(molecules_BxMxD, num_chars, self.rate, molecule_mask_BxM)
    dtype = jnp.result_type(chars_BxLxD, repeated_BxLxD)
    concat_BxLx2D = jnp.concatenate(
        [chars_BxLxD.astype(dtype), repeated_BxLxD.astype(dtype)], axis=-1)
    concat_BxLx2D = jnp.where(char_mask_BxL[..., None].astype(bool), concat_BxLx2D, 0)
    pad_before = (self.kernel_size - 1) // 2
    pad_after = self.kernel_size - 1 - pad_before
    conv = nn.Conv(
        self.d_model, kernel_size=(self.kernel_size,), strides=(1,),
        padding=((pad_before, pad_after),), dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=_conv_kernel_init(self.initializer_range),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        name="conv")
    x_BxLxD = apply_gelu(conv(concat_BxLx2D), self.gelu)
    x_BxLxD = _layer_norm(self.layer_norm_eps, self.dtype, self.param_dtype, "norm")(x_BxLxD)
    return nn.Dropout(self.dropout_rate)(x_BxLxD, deterministic=deterministic)
