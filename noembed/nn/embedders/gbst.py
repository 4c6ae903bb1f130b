"""Charformer's GBST: soft, learned segmentation of bytes into latent subword blocks.

Paper: Tay et al. 2022, "Charformer: Fast Character Transformers via Gradient-based Subword
Tokenization" (Sec. 2). Byte embeddings pass a 1-D convolution, are mean pooled into
non-overlapping blocks of every size b in 1..M, a shared linear scorer rates each block, the
block vectors and scores are repeated back to the byte length, a softmax over block sizes
weights them, and the weighted sum is mean pooled by the downsampling factor d_s.

Defaults follow the paper and the authors' Mesh-TF code (google-research/charformer,
`gradient_based_subword_tokenization`): a full conv of width 5 with "same" padding and no bias,
blocks 1..4, d_s = 2, no calibration. With `conv_kind="depthwise_separable"`,
`conv_kernel_size=M`, `conv_padding="lookahead"`, `use_bias=True` and
`score_calibration="position"` it computes what lucidrains/charformer-pytorch `GBST` computes on
unpadded input (tests/nn/test_gbst.py checks it). Unlike all three public implementations,
every step here is mask-aware, so padding never changes the outputs at real positions.
docs/gbst.md lists where the implementations differ.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from noembed.nn.embedders.base import Embedded

SCORE_CALIBRATIONS = ("none", "position", "score_attention")
CONV_KINDS = ("full", "depthwise_separable")
CONV_PADDINGS = ("same", "causal", "lookahead")


def _masked_block_mean(x_BxLxD, mask_BxL, block_size):
  """Means over the real positions of consecutive blocks: ([B, N, D], real count [B, N]).

  N = ceil(L / block_size); the last block may be partial and a block with no real position
  has mean 0.
  """
  batch, length, features = x_BxLxD.shape
  num_blocks = -(-length // block_size)
  extra = num_blocks * block_size - length
  weights_BxL = mask_BxL.astype(x_BxLxD.dtype)
  x_BxLxD = jnp.pad(x_BxLxD * weights_BxL[..., None], ((0, 0), (0, extra), (0, 0)))
  weights_BxL = jnp.pad(weights_BxL, ((0, 0), (0, extra)))
  sums_BxNxD = x_BxLxD.reshape(batch, num_blocks, block_size, features).sum(axis=2)
  counts_BxN = weights_BxL.reshape(batch, num_blocks, block_size).sum(axis=2)
  return sums_BxNxD / jnp.maximum(counts_BxN, 1)[..., None], counts_BxN


def _repeat_to_length(blocks_BxN, block_size, length):
  """Each block repeated block_size times along axis 1, cropped to `length`."""
  return jnp.repeat(blocks_BxN, block_size, axis=1)[:, :length]


def _masked_softmax(logits, mask, axis):
  """Softmax over `axis` where mask is True; rows without any True come out uniform."""
  return jax.nn.softmax(jnp.where(mask, logits, jnp.finfo(logits.dtype).min), axis=axis)


class GBSTEmbedder(nn.Module):
  """ids [B, L] int32, mask [B, L] -> Embedded(x [B, ceil(L/d_s), d_model], pooled mask).

  aux["block_scores"] float32 [B, L, n_blocks]: the (calibrated) weight of each block size at
  each byte, in the order of `block_sizes`; 0 at padding.

  Attributes:
    vocab_rows: embedding rows (259 byte ids, padded as in ByT5).
    max_block_size: M, the blocks are 1..M unless `block_sizes` is given.
    block_sizes: explicit block sizes overriding 1..M.
    downsample_factor: d_s, the final mean pooling width and stride.
    conv_kernel_size: width of the convolution before pooling.
    conv_kind: "full" (d_model x d_model per tap, Mesh-TF) or "depthwise_separable"
      (depthwise then pointwise, charformer-pytorch).
    conv_padding: "same" (centred, TF convention: the odd extra tap on the right; Mesh-TF),
      "causal" (sees bytes <= i; seq_flow_lite) or "lookahead" (sees bytes >= i;
      charformer-pytorch).
    use_bias: biases in the convolution(s) (charformer-pytorch has them, Mesh-TF does not).
      The scorer has none: a bias shared by all blocks cancels in the softmax.
    score_calibration: "none"; "position", the paper's P <- softmax(P P^T) P over real
      positions after the softmax (charformer-pytorch's score_consensus_attn); or
      "score_attention", the released code's block_mixing_mode: the raw scores S are scaled by
      softmax over real positions of |S_i|^2 before the softmax over blocks.
    use_block_position_embedding: add a learned embedding of the position within the block
      (i mod b) before pooling blocks of size b (Mesh-TF use_block_pos_embedding uses fixed
      sinusoids, seq_flow_lite add_block_pos_embed a learned table; both off by default).
  """

  d_model: int = 256
  vocab_rows: int = 384
  max_block_size: int = 4
  block_sizes: tuple[int, ...] | None = None
  downsample_factor: int = 2
  conv_kernel_size: int = 5
  conv_kind: str = "full"
  conv_padding: str = "same"
  use_bias: bool = False
  score_calibration: str = "none"
  use_block_position_embedding: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @property
  def resolved_block_sizes(self) -> tuple[int, ...]:
    if self.block_sizes is None:
      return tuple(range(1, self.max_block_size + 1))
    return tuple(self.block_sizes)

  def _check_config(self) -> None:
    for name in ("d_model", "vocab_rows", "max_block_size", "downsample_factor",
                 "conv_kernel_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"GBSTEmbedder.{name} must be a positive int, got {value!r}")
    sizes = self.resolved_block_sizes
    if (not sizes or len(set(sizes)) != len(sizes)
        or any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in sizes)):
      raise ValueError(
          f"GBSTEmbedder.block_sizes must be distinct positive ints, got {self.block_sizes!r}")
    for name, allowed in (("score_calibration", SCORE_CALIBRATIONS), ("conv_kind", CONV_KINDS),
                          ("conv_padding", CONV_PADDINGS)):
      if getattr(self, name) not in allowed:
        raise ValueError(
            f"GBSTEmbedder.{name} must be one of {allowed}, got {getattr(self, name)!r}")

  def setup(self):
    self._check_config()
    kernel_init = nn.initializers.lecun_normal()
    self.embedding = nn.Embed(
        self.vocab_rows, self.d_model, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=nn.with_logical_partitioning(
            nn.initializers.normal(stddev=1.0), ("vocab", "embed")))
    conv_options = dict(
        kernel_size=(self.conv_kernel_size,), padding="VALID", use_bias=self.use_bias,
        dtype=self.dtype, param_dtype=self.param_dtype)
    if self.conv_kind == "full":
      self.conv = nn.Conv(
          self.d_model, **conv_options,
          kernel_init=nn.with_logical_partitioning(kernel_init, (None, "embed", "mlp")),
          bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))
    else:
      self.conv = nn.Conv(
          self.d_model, **conv_options, feature_group_count=self.d_model,
          kernel_init=nn.with_logical_partitioning(kernel_init, (None, None, "embed")),
          bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))
      self.pointwise = nn.Dense(
          self.d_model, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
          kernel_init=nn.with_logical_partitioning(kernel_init, ("embed", "mlp")),
          bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))
    self.scorer = nn.Dense(
        1, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=nn.with_logical_partitioning(kernel_init, ("embed", None)))
    if self.use_block_position_embedding:
      self.block_position_embedding = self.param(
          "block_position_embedding",
          nn.with_logical_partitioning(nn.initializers.normal(stddev=0.02), (None, "embed")),
          (max(self.resolved_block_sizes), self.d_model), self.param_dtype)

  def _convolve(self, x_BxLxD):
    """The width-k convolution over zero-padded sequence ends (padding bytes are zeroed)."""
    taps = self.conv_kernel_size - 1
    left = {"same": taps // 2, "causal": taps, "lookahead": 0}[self.conv_padding]
    x_BxLxD = jnp.pad(x_BxLxD, ((0, 0), (left, taps - left), (0, 0)))
    x_BxLxD = self.conv(x_BxLxD)
    if self.conv_kind == "depthwise_separable":
      x_BxLxD = self.pointwise(x_BxLxD)
    return x_BxLxD

  def __call__(self, inputs, *, deterministic: bool) -> Embedded:
    del deterministic
    mask_BxL = inputs["mask"].astype(bool)
    length = mask_BxL.shape[1]
    weights_BxLx1 = mask_BxL[..., None].astype(self.dtype)
    x_BxLxD = self._convolve(self.embedding(inputs["ids"]) * weights_BxLx1)

    block_vectors, block_logits = [], []
    for block_size in self.resolved_block_sizes:
      blocks_in_BxLxD = x_BxLxD
      if self.use_block_position_embedding:
        offsets_L = jnp.arange(length) % block_size
        blocks_in_BxLxD = x_BxLxD + jnp.asarray(
            self.block_position_embedding, self.dtype)[offsets_L]
      means_BxNxD, _ = _masked_block_mean(blocks_in_BxLxD, mask_BxL, block_size)
      logits_BxN = self.scorer(means_BxNxD)[..., 0]
      block_vectors.append(_repeat_to_length(means_BxNxD, block_size, length))
      block_logits.append(_repeat_to_length(logits_BxN, block_size, length))
    blocks_BxLxNbxD = jnp.stack(block_vectors, axis=2)
    logits_BxLxNb = jnp.stack(block_logits, axis=2).astype(jnp.float32)

    if self.score_calibration == "score_attention":
      # Mesh-TF: att = einsum(S, S) over blocks, softmax over length, then S * att.
      energy_BxL = jnp.sum(logits_BxLxNb**2, axis=-1)
      logits_BxLxNb = logits_BxLxNb * _masked_softmax(energy_BxL, mask_BxL, axis=1)[..., None]
    scores_BxLxNb = jax.nn.softmax(logits_BxLxNb, axis=-1)
    if self.score_calibration == "position":
      similarity_BxLxL = jnp.einsum("bin,bjn->bij", scores_BxLxNb, scores_BxLxNb)
      attention_BxLxL = _masked_softmax(similarity_BxLxL, mask_BxL[:, None, :], axis=-1)
      scores_BxLxNb = jnp.einsum("bij,bjn->bin", attention_BxLxL, scores_BxLxNb)
    scores_BxLxNb = scores_BxLxNb * mask_BxL[..., None]

    mixed_BxLxD = jnp.einsum(
        "blnd,bln->bld", blocks_BxLxNbxD, scores_BxLxNb.astype(blocks_BxLxNbxD.dtype))
    pooled_BxMxD, counts_BxM = _masked_block_mean(mixed_BxLxD, mask_BxL, self.downsample_factor)
    pooled_BxMxD = nn.with_logical_constraint(pooled_BxMxD, ("batch", "length", "embed"))
    return Embedded(x=pooled_BxMxD, mask=counts_BxM > 0, aux={"block_scores": scores_BxLxNb})

  def upsample(self, hidden_BxMxD, embedded: Embedded, *, deterministic: bool):
    """hidden [B, ceil(L/d_s), D] -> [B, L, D]: each position repeated d_s times, cropped to L.

    Charformer itself never upsamples (its byte-level decoder cross-attends to the downsampled
    encoder); this is for encoder-only heads that predict bytes (MLM). L comes from
    embedded.aux["block_scores"].
    """
    del deterministic
    length = embedded.aux["block_scores"].shape[1]
    expected = math.ceil(length / self.downsample_factor)
    if hidden_BxMxD.shape[1] != expected:
      raise ValueError(f"upsample expects {expected} positions (ceil({length} / "
                       f"{self.downsample_factor})), got hidden of shape {hidden_BxMxD.shape}")
    return jnp.repeat(hidden_BxMxD, self.downsample_factor, axis=1)[:, :length]
