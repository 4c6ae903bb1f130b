"""Encoder-decoder model: any embedder -> T5 v1.1 encoder -> decoder over ByT5 byte targets.

As ByT5 (Xue et al. 2022; google-research/byt5 on T5X's v1.1 `EncoderDecoder`): the decoder has
its own, untied table of 384 byte rows (259 ids padded), gets its target positions from the
decoder stack's causal relative position bias only, reads shifted-right targets (decoder start
id 0 = pad) and ends in an untied projection onto 384 columns, of which the 259 ids are kept (as
heads.UnitHead pads). The encoder side takes the config-selected input method's embedder, so any
input method (downsampling ones included) can feed the decoder.

Greedy decoding encodes once, then re-runs the decoder over the whole prefix at every step (no
key/value cache) inside a lifted while loop that ends once every row has emitted eos.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from noembed import inputs
from noembed.models.heads import HeadSpec
from noembed.nn import transformer
from noembed.text import bytes as byte_text

# What a task asks of this model: logits over ByT5's byte ids at every target position.
TARGETS_HEAD = "targets"
TARGET_ROWS = 384
DECODER_START_ID = byte_text.PAD_ID


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "name": "encoder_decoder",
      "d_model": 256,
      "num_encoder_layers": 4,
      "num_decoder_layers": 4,
      "num_heads": 4,
      "mlp_dim": 1024,
      "dropout_rate": 0.1,
      "flavour": "t5",        # decoder positions come from the t5 relative position bias
  })


def shift_right(targets_BxT: jax.Array) -> jax.Array:
  """Decoder inputs: DECODER_START_ID, then the targets without their last position."""
  start_Bx1 = jnp.full(targets_BxT.shape[:1] + (1,), DECODER_START_ID, targets_BxT.dtype)
  return jnp.concatenate([start_Bx1, targets_BxT[:, :-1]], axis=1)


class EncoderDecoderModel(nn.Module):
  """batch (the input method's arrays + "targets", "targets_mask") -> logits [B, T, 259]."""

  embedder: nn.Module
  num_encoder_layers: int
  num_decoder_layers: int
  d_model: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float
  flavour: str = "t5"
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    if not transformer.get_flavour(self.flavour).relative_position_bias:
      raise ValueError(f"encoder_decoder needs a flavour with a relative position bias (the "
                       f"decoder's only position signal), i.e. 't5'; got {self.flavour!r}")
    stack = dict(d_model=self.d_model, num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                 dropout_rate=self.dropout_rate, flavour=self.flavour, dtype=self.dtype,
                 param_dtype=self.param_dtype)
    self.encoder = transformer.Encoder(num_layers=self.num_encoder_layers, **stack)
    self.decoder = transformer.Decoder(num_layers=self.num_decoder_layers, **stack)
    self.target_embedding = nn.Embed(
        TARGET_ROWS, self.d_model, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=nn.with_logical_partitioning(nn.initializers.normal(stddev=1.0),
                                                    ("vocab", "embed")))
    self.logits_dense = nn.Dense(
        TARGET_ROWS, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
            ("embed", "vocab")))

  def encode(self, batch, *, deterministic: bool) -> tuple[jax.Array, jax.Array]:
    """(encoded [B, M, D], encoded mask [B, M]); M < input length where the embedder pools."""
    embedded = self.embedder(batch, deterministic=deterministic)
    x_BxMxD = nn.with_logical_constraint(embedded.x, ("batch", "length", "embed"))
    encoded_BxMxD = self.encoder(x_BxMxD, embedded.mask, deterministic=deterministic)
    return encoded_BxMxD, embedded.mask

  def decode(self, decoder_inputs_BxT, decoder_mask_BxT, encoded_BxMxD, encoded_mask_BxM, *,
             deterministic: bool) -> jax.Array:
    """Logits float32 [B, T, 259] at every decoder position."""
    y_BxTxD = self.target_embedding(decoder_inputs_BxT)
    y_BxTxD = nn.with_logical_constraint(y_BxTxD, ("batch", "length", "embed"))
    y_BxTxD = self.decoder(y_BxTxD, decoder_mask_BxT, encoded_BxMxD, encoded_mask_BxM,
                           deterministic=deterministic)
    logits_BxTxR = self.logits_dense(y_BxTxD)
    return logits_BxTxR[..., :byte_text.VOCAB_SIZE].astype(jnp.float32)

  def __call__(self, batch, *, deterministic: bool) -> jax.Array:
    """Teacher forcing: logits [B, T, 259] for batch["targets"] given the shifted targets."""
    encoded_BxMxD, encoded_mask_BxM = self.encode(batch, deterministic=deterministic)
    targets_BxT = batch["targets"].astype(jnp.int32)
    return self.decode(shift_right(targets_BxT), batch["targets_mask"].astype(bool),
                       encoded_BxMxD, encoded_mask_BxM, deterministic=deterministic)

  def greedy_decode(self, batch, max_length: int) -> jax.Array:
    """Greedy byte ids int32 [B, max_length]: argmax at each step, pad (0) after each eos."""
    encoded_BxMxD, encoded_mask_BxM = self.encode(batch, deterministic=True)
    batch_size = encoded_BxMxD.shape[0]
    decoder_mask_BxT = jnp.ones((batch_size, max_length), bool)

    def body(model, carry):
      step, tokens_BxT, done_B = carry
      logits_BxTxV = model.decode(shift_right(tokens_BxT), decoder_mask_BxT, encoded_BxMxD,
                                  encoded_mask_BxM, deterministic=True)
      next_B = jnp.argmax(logits_BxTxV[:, step], axis=-1).astype(jnp.int32)
      next_B = jnp.where(done_B, byte_text.PAD_ID, next_B)
      tokens_BxT = tokens_BxT.at[:, step].set(next_B)
      return step + 1, tokens_BxT, done_B | (next_B == byte_text.EOS_ID)

    def not_finished(model, carry):
      del model
      step, _, done_B = carry
      return (step < max_length) & ~jnp.all(done_B)

    init = (jnp.zeros((), jnp.int32), jnp.full((batch_size, max_length), byte_text.PAD_ID,
                                               jnp.int32), jnp.zeros((batch_size,), bool))
    _, tokens_BxT, _ = nn.while_loop(not_finished, body, self, init)
    return tokens_BxT


def build(config: ml_collections.ConfigDict, head: HeadSpec) -> EncoderDecoderModel:
  if head.kind != TARGETS_HEAD or head.vocab_size != byte_text.VOCAB_SIZE:
    raise ValueError(f"model encoder_decoder predicts ByT5 target bytes (head kind "
                     f"{TARGETS_HEAD!r}, vocab_size {byte_text.VOCAB_SIZE}); task "
                     f"{config.task.name!r} asks for {head}")
  method, method_config = inputs.selected(config.embedder)
  dtype, param_dtype = jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
  model = config.model
  return EncoderDecoderModel(
      embedder=method.build_embedder(method_config, d_model=model.d_model, dtype=dtype,
                                     param_dtype=param_dtype),
      num_encoder_layers=model.num_encoder_layers, num_decoder_layers=model.num_decoder_layers,
      d_model=model.d_model, num_heads=model.num_heads, mlp_dim=model.mlp_dim,
      dropout_rate=model.dropout_rate, flavour=model.flavour, dtype=dtype,
      param_dtype=param_dtype)
