"""Attention: block-local vs masked full attention and transformers' CANINE local layer, T5
relative position buckets and bias vs transformers' T5Attention, masking edge cases."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import CanineConfig, T5Config
from transformers.models.canine.modeling_canine import CanineLayer
from transformers.models.t5.modeling_t5 import T5Attention

from noembed.nn import attention, transformer
from tests.nn import test_transformer as helpers

ATOL = 1e-5
D_MODEL, HEADS = 32, 4


def _mha(**fields) -> attention.MultiHeadAttention:
  return attention.MultiHeadAttention(num_heads=HEADS, head_dim=8, d_model=D_MODEL, **fields)


def _block_diagonal(length: int, block: int) -> np.ndarray:
  blocks = np.arange(length) // block
  return blocks[:, None] == blocks[None, :]


def _self_attention_with_bias(module: attention.MultiHeadAttention):
  apply = jax.jit(lambda variables, x, mask, bias: module.apply(
      variables, x, x, mask, bias_BxHxQxK=bias, deterministic=True))
  return lambda *args: np.asarray(apply(*args))


@pytest.mark.parametrize("length", [12, 13])
def test_block_local_equals_full_attention_with_block_diagonal_mask(length):
  x, mask = helpers._inputs(0, 2, length, [length, 7])
  bias = np.random.default_rng(1).normal(size=(1, HEADS, length, length)).astype(np.float32)
  params = helpers._random_params(_mha(), x, x)
  full_mask = _block_diagonal(length, 4)[None] & mask[:, None, :]
  expected = _self_attention_with_bias(_mha())(params, x, full_mask, bias)
  local = _self_attention_with_bias(_mha(block_size=4))
  # Compared at real queries: fully padded blocks average different (masked) keys.
  np.testing.assert_allclose(local(params, x, mask[:, None, :], bias)[mask], expected[mask],
                             atol=ATOL)
  # A full [B, Q, K] mask is cut into the same diagonal blocks.
  np.testing.assert_allclose(local(params, x, full_mask, bias)[mask], expected[mask],
                             atol=ATOL)


@pytest.mark.parametrize("length, lengths", [(16, [16, 9]), (21, [21, 13]), (5, [5, 3])])
def test_local_encoder_layer_matches_transformers_canine(length, lengths):
  torch.manual_seed(0)
  config = CanineConfig(hidden_size=D_MODEL, num_attention_heads=HEADS, intermediate_size=64,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  reference = CanineLayer(config, local=True, always_attend_to_first_position=False,
                          first_position_attends_to_all=False, attend_from_chunk_width=8,
                          attend_from_chunk_stride=8, attend_to_chunk_width=8,
                          attend_to_chunk_stride=8).eval()
  x, mask = helpers._inputs(2, 2, length, lengths)
  # CanineModel's 3D mask: every query row carries the key padding mask.
  mask_BxLxL = np.broadcast_to(mask[:, None, :], (2, length, length)).astype(np.float32)
  with torch.no_grad():
    expected = helpers._t(reference(torch.tensor(x), torch.tensor(mask_BxLxL))[0])
  layer = transformer.EncoderLayer(d_model=D_MODEL, num_heads=HEADS, mlp_dim=64,
                                   flavour="bert", attention_block_size=8)
  actual = helpers._run(layer, {"params": helpers.bert_layer_params(reference, HEADS)}, x,
                        mask)
  np.testing.assert_allclose(actual[mask], expected[mask], atol=ATOL)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets, max_distance", [(32, 128), (8, 20), (64, 300)])
def test_relative_position_bucket_matches_transformers(bidirectional, num_buckets,
                                                       max_distance):
  relative = np.arange(-1000, 1001)
  expected = T5Attention._relative_position_bucket(
      torch.tensor(relative), bidirectional=bidirectional, num_buckets=num_buckets,
      max_distance=max_distance).numpy()
  actual = attention.relative_position_bucket(
      jnp.asarray(relative), bidirectional=bidirectional, num_buckets=num_buckets,
      max_distance=max_distance)
  np.testing.assert_array_equal(np.asarray(actual), expected)


@pytest.mark.parametrize("is_decoder", [False, True])
def test_relative_position_bias_matches_transformers(is_decoder):
  torch.manual_seed(0)
  config = T5Config(d_model=D_MODEL, num_heads=HEADS, relative_attention_num_buckets=32,
                    relative_attention_max_distance=128, is_decoder=is_decoder)
  reference = T5Attention(config, has_relative_attention_bias=True, layer_idx=0)
  with torch.no_grad():
    expected = helpers._t(reference.compute_bias(150, 150))
  bias = attention.RelativePositionBias(num_heads=HEADS, bidirectional=not is_decoder)
  params = {"params": {"embedding": helpers._t(reference.relative_attention_bias.weight)}}
  actual = bias.apply(params, 150, 150)
  np.testing.assert_allclose(np.asarray(actual), expected, atol=0)


@pytest.mark.parametrize("block_size", [None, 4])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_fully_masked_rows_stay_finite(block_size, dtype):
  x, mask = helpers._inputs(3, 2, 10, [0, 10])
  module = _mha(block_size=block_size, dtype=dtype)
  params = helpers._random_params(module, x, x)
  out = helpers._run(module, params, x, x, mask[:, None, :])
  assert np.isfinite(out).all()
  # The example with real keys is unaffected by the other one being all padding.
  alone = helpers._run(module, params, x[1:], x[1:], mask[1:, None, :])
  np.testing.assert_allclose(out[1:], alone, atol=ATOL if dtype == jnp.float32 else 0.05)


def test_cross_attention_over_other_length_and_block_size_needs_self_attention():
  queries, _ = helpers._inputs(4, 2, 3, [3, 3])
  keys, key_mask = helpers._inputs(5, 2, 6, [6, 2])
  params = helpers._random_params(_mha(), queries, keys)
  out = helpers._run(_mha(), params, queries, keys, key_mask[:, None, :])
  truncated = helpers._run(_mha(), params, queries[1:], keys[1:, :2], key_mask[1:, None, :2])
  np.testing.assert_allclose(out[1:], truncated, atol=ATOL)
  with pytest.raises(ValueError, match="3 queries and 6 keys"):
    jax.eval_shape(lambda: _mha(block_size=2).init(jax.random.key(0), queries, keys,
                                                   deterministic=True))


def test_unscaled_logits_fold_the_scale_into_the_query_init():
  module = attention.MultiHeadAttention(num_heads=4, head_dim=64, d_model=256, use_bias=False,
                                        scale_logits=False)
  x = jnp.zeros((1, 1, 256))
  params = nn.unbox(jax.jit(lambda: module.init(jax.random.key(0), x, x,
                                                 deterministic=True))())["params"]
  stds = {name: float(np.std(value)) for name, value in params.items()}
  # T5: query std (d_model * head_dim)^-0.5, key/value d_model^-0.5, out (heads*head_dim)^-0.5.
  np.testing.assert_allclose(stds["query"], (256 * 64) ** -0.5, rtol=0.03)
  np.testing.assert_allclose(stds["key"], 256**-0.5, rtol=0.03)
  np.testing.assert_allclose(stds["value"], 256**-0.5, rtol=0.03)
  np.testing.assert_allclose(stds["out"], 256**-0.5, rtol=0.03)
