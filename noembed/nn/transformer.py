"""Transformer encoder and decoder stacks in two flavours: BERT post-LN and T5 v1.1 pre-RMSNorm.

"bert" (Devlin et al. 2019): post-LayerNorm residual blocks with biases and scaled attention,
as transformers `BertLayer` (and CANINE's `CanineLayer`, with block-local attention).
"t5" (Raffel et al. 2020, v1.1 checkpoints): pre-RMSNorm blocks without biases, unscaled
attention with a bucketed relative position bias computed once per stack and shared by its
layers, gated-GELU MLP, a final RMSNorm; as transformers `T5Block`/`T5Stack` and T5X.

Greedy decoding recomputes the decoder over the whole prefix; a key/value cache would add a
`decode` path to `MultiHeadAttention` and a query offset to `RelativePositionBias`.
"""

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from noembed.nn.attention import Initializer, MultiHeadAttention, RelativePositionBias

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}
# Gated MLPs: act(x W0) * (x W1). T5 v1.1's "gated-gelu" is the tanh GELU (T5X `nn.gelu`,
# transformers "gelu_new").
_GATED_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gated-gelu": _ACTIVATIONS["gelu_tanh"],
    "gated-relu": jax.nn.relu,
    "gated-silu": jax.nn.silu,
}
ACTIVATION_NAMES = tuple(_ACTIVATIONS) + tuple(_GATED_ACTIVATIONS)


@dataclasses.dataclass(frozen=True)
class Flavour:
  """What distinguishes the BERT and T5 v1.1 blocks."""

  pre_norm: bool
  rms_norm: bool
  use_bias: bool
  scale_logits: bool
  activation: str
  layer_norm_eps: float
  kernel_init: Initializer | None  # None: T5X fan-in normal (see attention.fan_in_normal)
  relative_position_bias: bool  # shared across layers, computed once per stack
  final_norm: bool  # a norm (and dropout) after the last layer, and dropout before the first


FLAVOURS: dict[str, Flavour] = {
    "bert": Flavour(pre_norm=False, rms_norm=False, use_bias=True, scale_logits=True,
                    activation="gelu", layer_norm_eps=1e-12,
                    kernel_init=nn.initializers.truncated_normal(0.02),
                    relative_position_bias=False, final_norm=False),
    "t5": Flavour(pre_norm=True, rms_norm=True, use_bias=False, scale_logits=False,
                  activation="gated-gelu", layer_norm_eps=1e-6, kernel_init=None,
                  relative_position_bias=True, final_norm=True),
}


def get_flavour(name: str) -> Flavour:
  if name not in FLAVOURS:
    raise ValueError(f"unknown flavour {name!r}; expected one of {', '.join(FLAVOURS)}")
  return FLAVOURS[name]


def _constrain(x_BxLxD: jax.Array) -> jax.Array:
  return nn.with_logical_constraint(x_BxLxD, ("batch", "length", "embed"))


def _norm(spec: Flavour, eps: float, dtype, param_dtype, name: str) -> nn.Module:
  scale_init = nn.with_logical_partitioning(nn.initializers.ones, ("embed",))
  if spec.rms_norm:
    return nn.RMSNorm(epsilon=eps, dtype=dtype, param_dtype=param_dtype, scale_init=scale_init,
                      name=name)
  return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=param_dtype, scale_init=scale_init,
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
                      name=name)


class Mlp(nn.Module):
  """Position-wise MLP, plain (`wi`) or gated (`wi_0` activated times `wi_1`), then `wo`."""

  d_model: int
  mlp_dim: int
  activation: str = "gelu"
  use_bias: bool = True
  dropout_rate: float = 0.0  # after the activation (T5); BERT has none there
  kernel_init: Initializer | None = None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def _dense(self, features: int, names: tuple[str, str], name: str) -> nn.Dense:
    kernel_init = self.kernel_init or nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    return nn.Dense(features, use_bias=self.use_bias, dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    kernel_init=nn.with_logical_partitioning(kernel_init, names),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names[1:]),
                    name=name)

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, *, deterministic: bool) -> jax.Array:
    if self.activation in _GATED_ACTIVATIONS:
      activate = _GATED_ACTIVATIONS[self.activation]
      h_BxLxF = (activate(self._dense(self.mlp_dim, ("embed", "mlp"), "wi_0")(x_BxLxD))
                 * self._dense(self.mlp_dim, ("embed", "mlp"), "wi_1")(x_BxLxD))
    elif self.activation in _ACTIVATIONS:
      h_BxLxF = _ACTIVATIONS[self.activation](
          self._dense(self.mlp_dim, ("embed", "mlp"), "wi")(x_BxLxD))
    else:
      raise ValueError(f"unknown activation {self.activation!r}; expected one of "
                       f"{', '.join(ACTIVATION_NAMES)}")
    h_BxLxF = nn.with_logical_constraint(h_BxLxF, ("batch", "length", "mlp"))
    h_BxLxF = nn.Dropout(self.dropout_rate)(h_BxLxF, deterministic=deterministic)
    return self._dense(self.d_model, ("mlp", "embed"), "wo")(h_BxLxF)


class _Block(nn.Module):
  """Fields and sub-layer plumbing shared by EncoderLayer and DecoderLayer."""

  d_model: int
  num_heads: int
  mlp_dim: int
  head_dim: int | None = None  # default d_model // num_heads
  flavour: str = "bert"
  activation: str | None = None  # default: the flavour's ("gelu" bert, "gated-gelu" t5)
  layer_norm_eps: float | None = None  # default: the flavour's (1e-12 bert, 1e-6 t5)
  dropout_rate: float = 0.1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def _layer_norm_eps(self) -> float:
    if self.layer_norm_eps is None:
      return get_flavour(self.flavour).layer_norm_eps
    return self.layer_norm_eps

  def _attention(self, name: str, block_size: int | None = None) -> MultiHeadAttention:
    spec = get_flavour(self.flavour)
    if self.head_dim is None and self.d_model % self.num_heads:
      raise ValueError(f"d_model={self.d_model} is not a multiple of num_heads="
                       f"{self.num_heads}; set head_dim")
    return MultiHeadAttention(
        num_heads=self.num_heads, head_dim=self.head_dim or self.d_model // self.num_heads,
        d_model=self.d_model, use_bias=spec.use_bias, dropout_rate=self.dropout_rate,
        block_size=block_size, scale_logits=spec.scale_logits, kernel_init=spec.kernel_init,
        dtype=self.dtype, param_dtype=self.param_dtype, name=name)

  def _mlp(self) -> Mlp:
    spec = get_flavour(self.flavour)
    return Mlp(d_model=self.d_model, mlp_dim=self.mlp_dim,
               activation=spec.activation if self.activation is None else self.activation,
               use_bias=spec.use_bias,
               dropout_rate=self.dropout_rate if spec.pre_norm else 0.0,
               kernel_init=spec.kernel_init, dtype=self.dtype, param_dtype=self.param_dtype,
               name="mlp")

  def _sublayer(self, x_BxLxD, branch, name: str, deterministic: bool) -> jax.Array:
    """x + dropout(branch(norm(x))) (pre-norm) or norm(x + dropout(branch(x))) (post-norm)."""
    spec = get_flavour(self.flavour)
    norm = _norm(spec, self._layer_norm_eps(), self.dtype, self.param_dtype, f"{name}_norm")
    dropout = nn.Dropout(self.dropout_rate)
    if spec.pre_norm:
      return x_BxLxD + dropout(branch(norm(x_BxLxD)), deterministic=deterministic)
    return norm(x_BxLxD + dropout(branch(x_BxLxD), deterministic=deterministic))


class EncoderLayer(_Block):
  """Self-attention and MLP sub-layers; attention_block_size makes the attention block-local.

  mask_BxL: True at real positions; padded keys are never attended, so padding does not change
  the outputs at real positions. attention_bias: added to the logits, e.g. [1, H, L, L].
  """

  attention_block_size: int | None = None

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, mask_BxL: jax.Array, *, deterministic: bool,
               attention_bias: jax.Array | None = None) -> jax.Array:
    attention = self._attention("attention", self.attention_block_size)
    mask_Bx1xL = mask_BxL[:, None, :].astype(bool)
    x_BxLxD = self._sublayer(
        _constrain(x_BxLxD),
        lambda h: attention(h, h, mask_Bx1xL, bias_BxHxQxK=attention_bias,
                            deterministic=deterministic),
        "attention", deterministic)
    mlp = self._mlp()
    x_BxLxD = self._sublayer(x_BxLxD, lambda h: mlp(h, deterministic=deterministic), "mlp",
                             deterministic)
    return _constrain(x_BxLxD)


class DecoderLayer(_Block):
  """Causal self-attention, cross-attention over the encoder outputs, and MLP sub-layers.

  Cross-attention has no position bias (T5). attention_bias: added to the self-attention
  logits, e.g. [1, H, T, T].
  """

  @nn.compact
  def __call__(self, y_BxTxD: jax.Array, y_mask_BxT: jax.Array, encoded_BxLxD: jax.Array,
               encoded_mask_BxL: jax.Array, *, deterministic: bool,
               attention_bias: jax.Array | None = None) -> jax.Array:
    length = y_BxTxD.shape[1]
    causal_TxT = jnp.tril(jnp.ones((length, length), bool))
    self_mask_BxTxT = causal_TxT[None] & y_mask_BxT[:, None, :].astype(bool)
    cross_mask_Bx1xL = encoded_mask_BxL[:, None, :].astype(bool)
    self_attention = self._attention("self_attention")
    cross_attention = self._attention("cross_attention")
    mlp = self._mlp()
    y_BxTxD = self._sublayer(
        _constrain(y_BxTxD),
        lambda h: self_attention(h, h, self_mask_BxTxT, bias_BxHxQxK=attention_bias,
                                 deterministic=deterministic),
        "self_attention", deterministic)
    y_BxTxD = self._sublayer(
        y_BxTxD,
        lambda h: cross_attention(h, encoded_BxLxD, cross_mask_Bx1xL,
                                  deterministic=deterministic),
        "cross_attention", deterministic)
    y_BxTxD = self._sublayer(y_BxTxD, lambda h: mlp(h, deterministic=deterministic), "mlp",
                             deterministic)
    return _constrain(y_BxTxD)


class _Step(nn.Module):
  """One layer behind positional arguments, so nn.remat and nn.scan see `deterministic` as
  static; returns (x, None) when scanned."""

  layer_type: type
  layer_fields: tuple[tuple[str, object], ...]
  scanned: bool = False

  @nn.compact
  def __call__(self, x_BxLxD, deterministic, attention_bias, *context):
    layer = self.layer_type(**dict(self.layer_fields), name="layer")
    x_BxLxD = layer(x_BxLxD, *context, deterministic=deterministic, attention_bias=attention_bias)
    return (x_BxLxD, None) if self.scanned else x_BxLxD


class _Stack(nn.Module):
  """Stack fields and the layer loop shared by Encoder and Decoder (mixed into both)."""

  num_layers: int = dataclasses.field(kw_only=True)
  relative_attention_num_buckets: int = dataclasses.field(default=32, kw_only=True)
  relative_attention_max_distance: int = dataclasses.field(default=128, kw_only=True)
  scan_layers: bool = dataclasses.field(default=False, kw_only=True)  # params get "layers"
  remat: bool = dataclasses.field(default=False, kw_only=True)  # recompute layers in backward

  def _relative_bias(self, length: int, bidirectional: bool) -> jax.Array | None:
    if not get_flavour(self.flavour).relative_position_bias:
      return None
    return RelativePositionBias(
        num_heads=self.num_heads, bidirectional=bidirectional,
        num_buckets=self.relative_attention_num_buckets,
        max_distance=self.relative_attention_max_distance, dtype=self.dtype,
        param_dtype=self.param_dtype, name="relative_position_bias")(length, length)

  def _layers(self, layer_type: type, x_BxLxD, attention_bias, context, deterministic):
    spec = get_flavour(self.flavour)
    dropout = nn.Dropout(self.dropout_rate)
    if spec.final_norm:
      x_BxLxD = dropout(x_BxLxD, deterministic=deterministic)
    fields = tuple((field.name, getattr(self, field.name)) for field in dataclasses.fields(
        layer_type) if field.name not in ("parent", "name"))
    step_type = _Step
    if self.remat:
      step_type = nn.remat(_Step, static_argnums=(2,), prevent_cse=not self.scan_layers)
    if self.scan_layers:
      stack = nn.scan(
          step_type, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
          in_axes=(nn.broadcast,) * (2 + len(context)), length=self.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})
      x_BxLxD, _ = stack(layer_type, fields, scanned=True, name="layers")(
          x_BxLxD, deterministic, attention_bias, *context)
    else:
      for index in range(self.num_layers):
        x_BxLxD = step_type(layer_type, fields, name=f"layers_{index}")(
            x_BxLxD, deterministic, attention_bias, *context)
    if spec.final_norm:
      x_BxLxD = _norm(spec, self._layer_norm_eps(), self.dtype, self.param_dtype,
                      "final_norm")(x_BxLxD)
      x_BxLxD = dropout(x_BxLxD, deterministic=deterministic)
    return _constrain(x_BxLxD)


class Encoder(_Stack, EncoderLayer):
  """num_layers EncoderLayers; for t5 also input dropout, a shared bidirectional relative
  position bias, and a final RMSNorm (T5EncoderModel's stack)."""

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, mask_BxL: jax.Array, *,
               deterministic: bool) -> jax.Array:
    bias_1xHxLxL = self._relative_bias(x_BxLxD.shape[1], bidirectional=True)
    return self._layers(EncoderLayer, x_BxLxD, bias_1xHxLxL, (mask_BxL,), deterministic)


class Decoder(_Stack, DecoderLayer):
  """num_layers DecoderLayers; for t5 also input dropout, a shared causal (unidirectional)
  relative position bias, and a final RMSNorm (T5's decoder stack)."""

  @nn.compact
  def __call__(self, y_BxTxD: jax.Array, y_mask_BxT: jax.Array, encoded_BxLxD: jax.Array,
               encoded_mask_BxL: jax.Array, *, deterministic: bool) -> jax.Array:
    bias_1xHxTxT = self._relative_bias(y_BxTxD.shape[1], bidirectional=False)
    return self._layers(DecoderLayer, y_BxTxD, bias_1xHxTxT,
                        (y_mask_BxT, encoded_BxLxD, encoded_mask_BxL), deterministic)
