"""Encoder/decoder layers and stacks vs transformers' BertLayer and T5 stacks (fp32, atol 1e-5).

References are randomly initialised from tiny configs; their weights are copied into noembed's
param trees. Also: padding invariance, bf16, jit, scan/remat equivalence, logical axis names.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import BertConfig, T5Config
from transformers.models.bert.modeling_bert import BertLayer
from transformers.models.t5.modeling_t5 import T5EncoderModel, T5Stack

from noembed.nn import transformer

ATOL = 1e-5
D_MODEL, HEADS, MLP_DIM = 32, 4, 64


def _t(tensor) -> np.ndarray:
  return tensor.detach().numpy().astype(np.float32)


def attention_params(query, key, value, out, heads: int, bias: bool) -> dict:
  """torch Linear layers (weight [out, in]) -> MultiHeadAttention params."""
  params = {}
  for name, linear in (("query", query), ("key", key), ("value", value)):
    weight = _t(linear.weight)
    params[name] = weight.T.reshape(weight.shape[1], heads, -1)
    if bias:
      params[f"{name}_bias"] = _t(linear.bias).reshape(heads, -1)
  weight = _t(out.weight)
  params["out"] = weight.T.reshape(heads, -1, weight.shape[0])
  if bias:
    params["out_bias"] = _t(out.bias)
  return params


def _dense(linear, bias: bool = True) -> dict:
  params = {"kernel": _t(linear.weight).T}
  if bias:
    params["bias"] = _t(linear.bias)
  return params


def _layer_norm(norm) -> dict:
  return {"scale": _t(norm.weight), "bias": _t(norm.bias)}


def bert_attention_block_params(attention, heads: int) -> tuple[dict, dict]:
  """BertAttention / CanineAttention -> (attention params, post-norm params)."""
  self_attention = attention.self
  return (attention_params(self_attention.query, self_attention.key, self_attention.value,
                           attention.output.dense, heads, bias=True),
          _layer_norm(attention.output.LayerNorm))


def bert_layer_params(layer, heads: int) -> dict:
  """BertLayer or CanineLayer -> EncoderLayer(flavour="bert") params (DecoderLayer with
  cross-attention when the layer has one)."""
  attention, attention_norm = bert_attention_block_params(layer.attention, heads)
  params = {"mlp": {"wi": _dense(layer.intermediate.dense), "wo": _dense(layer.output.dense)},
            "mlp_norm": _layer_norm(layer.output.LayerNorm)}
  if hasattr(layer, "crossattention"):
    cross, cross_norm = bert_attention_block_params(layer.crossattention, heads)
    params.update(self_attention=attention, self_attention_norm=attention_norm,
                  cross_attention=cross, cross_attention_norm=cross_norm)
  else:
    params.update(attention=attention, attention_norm=attention_norm)
  return params


def _t5_attention(attention, heads: int) -> dict:
  return attention_params(attention.q, attention.k, attention.v, attention.o, heads, bias=False)


def t5_stack_params(stack, heads: int) -> dict:
  """T5Stack (encoder or decoder) -> Encoder/Decoder(flavour="t5") params, unrolled layers."""
  params = {"final_norm": {"scale": _t(stack.final_layer_norm.weight)},
            "relative_position_bias": {"embedding": _t(
                stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight)}}
  for index, block in enumerate(stack.block):
    feed_forward = block.layer[-1]
    layer = {"mlp": {"wi_0": _dense(feed_forward.DenseReluDense.wi_0, bias=False),
                     "wi_1": _dense(feed_forward.DenseReluDense.wi_1, bias=False),
                     "wo": _dense(feed_forward.DenseReluDense.wo, bias=False)},
             "mlp_norm": {"scale": _t(feed_forward.layer_norm.weight)}}
    self_name = "self_attention" if stack.is_decoder else "attention"
    layer[self_name] = _t5_attention(block.layer[0].SelfAttention, heads)
    layer[f"{self_name}_norm"] = {"scale": _t(block.layer[0].layer_norm.weight)}
    if stack.is_decoder:
      layer["cross_attention"] = _t5_attention(block.layer[1].EncDecAttention, heads)
      layer["cross_attention_norm"] = {"scale": _t(block.layer[1].layer_norm.weight)}
    params[f"layers_{index}"] = {"layer": layer}
  return params


def _random_params(module: nn.Module, *args, seed: int = 0) -> dict:
  """Variables of `module` filled from numpy (no XLA random-number compilation)."""
  shapes = nn.unbox(jax.eval_shape(
      lambda: module.init(jax.random.key(0), *args, deterministic=True)))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda leaf: (0.2 * rng.normal(size=leaf.shape)).astype(leaf.dtype),
                      shapes)


def _jit_apply(module: nn.Module, *, deterministic: bool = True, rngs=None):
  """One jitted apply to call repeatedly: (variables, *args) -> float32 numpy."""
  apply = jax.jit(lambda v, *a: module.apply(v, *a, deterministic=deterministic, rngs=rngs))
  return lambda variables, *args: np.asarray(apply(variables, *args).astype(jnp.float32))


def _run(module: nn.Module, variables: dict, *args) -> np.ndarray:
  return _jit_apply(module)(variables, *args)


def _additive(mask_Bx1xQxK: np.ndarray) -> torch.Tensor:
  return torch.tensor(np.where(mask_Bx1xQxK, 0.0, np.finfo(np.float32).min), dtype=torch.float32)


def _inputs(seed: int, batch: int, length: int, lengths: list[int]):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, length, D_MODEL)).astype(np.float32)
  mask = np.arange(length)[None, :] < np.array(lengths)[:, None]
  return x, mask


def _bert_config(**overrides) -> BertConfig:
  config = BertConfig(hidden_size=D_MODEL, num_attention_heads=HEADS, intermediate_size=MLP_DIM,
                      num_hidden_layers=1, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, **overrides)
  config._attn_implementation = "eager"
  return config


@pytest.mark.parametrize("hidden_act, activation", [("gelu", "gelu"), ("gelu_new", "gelu_tanh")])
def test_bert_layer_matches_transformers(hidden_act, activation):
  torch.manual_seed(0)
  reference = BertLayer(_bert_config(hidden_act=hidden_act)).eval()
  x, mask = _inputs(1, 2, 9, [9, 5])
  with torch.no_grad():
    expected = _t(reference(torch.tensor(x), attention_mask=_additive(mask[:, None, None, :])))
  layer = transformer.EncoderLayer(d_model=D_MODEL, num_heads=HEADS, mlp_dim=MLP_DIM,
                                   flavour="bert", activation=activation)
  actual = _run(layer, {"params": bert_layer_params(reference, HEADS)}, x, mask)
  np.testing.assert_allclose(actual[mask], expected[mask], atol=ATOL)


def test_bert_decoder_layer_matches_transformers():
  torch.manual_seed(0)
  reference = BertLayer(_bert_config(is_decoder=True, add_cross_attention=True)).eval()
  y, y_mask = _inputs(2, 2, 6, [6, 4])
  encoded, encoded_mask = _inputs(3, 2, 7, [3, 7])
  self_mask = np.tril(np.ones((6, 6), bool))[None] & y_mask[:, None, :]
  with torch.no_grad():
    expected = _t(reference(torch.tensor(y), attention_mask=_additive(self_mask[:, None]),
                            encoder_hidden_states=torch.tensor(encoded),
                            encoder_attention_mask=_additive(encoded_mask[:, None, None])))
  layer = transformer.DecoderLayer(d_model=D_MODEL, num_heads=HEADS, mlp_dim=MLP_DIM,
                                   flavour="bert")
  actual = _run(layer, {"params": bert_layer_params(reference, HEADS)}, y, y_mask, encoded,
                encoded_mask)
  np.testing.assert_allclose(actual[y_mask], expected[y_mask], atol=ATOL)


def _t5_config(**overrides) -> T5Config:
  config = T5Config(vocab_size=8, d_model=D_MODEL, d_kv=8, d_ff=MLP_DIM, num_layers=2,
                    num_heads=HEADS, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    use_cache=False, **overrides)
  config._attn_implementation = "eager"
  return config


def test_t5_encoder_matches_transformers():
  torch.manual_seed(0)
  reference = T5EncoderModel(_t5_config()).eval()
  # Longer than max_distance / 2 so the logarithmic and the clipped buckets are used.
  x, mask = _inputs(4, 2, 150, [150, 97])
  with torch.no_grad():
    expected = _t(reference(inputs_embeds=torch.tensor(x),
                            attention_mask=torch.tensor(mask.astype(np.int64))).last_hidden_state)
  encoder = transformer.Encoder(num_layers=2, d_model=D_MODEL, num_heads=HEADS, head_dim=8,
                                mlp_dim=MLP_DIM, flavour="t5")
  actual = _run(encoder, {"params": t5_stack_params(reference.encoder, HEADS)}, x, mask)
  np.testing.assert_allclose(actual[mask], expected[mask], atol=ATOL)


def test_t5_decoder_matches_transformers():
  torch.manual_seed(0)
  reference = T5Stack(_t5_config(is_decoder=True)).eval()
  y, y_mask = _inputs(5, 2, 40, [40, 23])
  encoded, encoded_mask = _inputs(6, 2, 11, [7, 11])
  with torch.no_grad():
    expected = _t(reference(inputs_embeds=torch.tensor(y),
                            attention_mask=torch.tensor(y_mask.astype(np.int64)),
                            encoder_hidden_states=torch.tensor(encoded),
                            encoder_attention_mask=torch.tensor(encoded_mask.astype(np.int64)),
                            ).last_hidden_state)
  decoder = transformer.Decoder(num_layers=2, d_model=D_MODEL, num_heads=HEADS, head_dim=8,
                                mlp_dim=MLP_DIM, flavour="t5")
  actual = _run(decoder, {"params": t5_stack_params(reference, HEADS)}, y, y_mask, encoded,
                  encoded_mask)
  np.testing.assert_allclose(actual[y_mask], expected[y_mask], atol=ATOL)


def _encoder(flavour: str, **fields) -> transformer.Encoder:
  return transformer.Encoder(num_layers=2, d_model=D_MODEL, num_heads=HEADS, mlp_dim=MLP_DIM,
                             flavour=flavour, **fields)


def _decoder(flavour: str, **fields) -> transformer.Decoder:
  return transformer.Decoder(num_layers=2, d_model=D_MODEL, num_heads=HEADS, mlp_dim=MLP_DIM,
                             flavour=flavour, **fields)


@pytest.mark.parametrize("flavour, block_size", [("bert", None), ("t5", None), ("bert", 4)])
def test_encoder_padding_does_not_change_real_positions(flavour, block_size):
  encoder = _encoder(flavour, attention_block_size=block_size)
  x, mask = _inputs(7, 2, 10, [10, 6])
  params = _random_params(encoder, x, mask)
  padded_x = np.concatenate([x, 100.0 * _inputs(8, 2, 5, [0, 0])[0]], axis=1)
  padded_x[1, 6:] = -50.0  # garbage where the mask already said padding
  padded_mask = np.pad(mask, ((0, 0), (0, 5)))
  apply = _jit_apply(encoder)
  plain = apply(params, x, mask)
  padded = apply(params, padded_x, padded_mask)
  assert np.isfinite(padded).all()
  np.testing.assert_allclose(padded[:, :10][mask], plain[mask], atol=ATOL)


@pytest.mark.parametrize("flavour", ["bert", "t5"])
def test_decoder_is_causal_and_ignores_padding(flavour):
  decoder = _decoder(flavour)
  y, y_mask = _inputs(9, 2, 8, [8, 8])
  encoded, encoded_mask = _inputs(10, 2, 6, [6, 4])
  params = _random_params(decoder, y, y_mask, encoded, encoded_mask)
  apply = _jit_apply(decoder)
  full = apply(params, y, y_mask, encoded, encoded_mask)
  changed_y = y.copy()
  changed_y[:, 5:] = 1e3  # future positions must not reach positions < 5
  changed_encoded = encoded.copy()
  changed_encoded[1, 4:] = 1e3  # padded encoder positions
  changed = apply(params, changed_y, y_mask, changed_encoded, encoded_mask)
  np.testing.assert_allclose(changed[:, :5], full[:, :5], atol=ATOL)
  assert not np.allclose(changed[:, 5:], full[:, 5:], atol=1e-2)


@pytest.mark.parametrize("flavour", ["bert", "t5"])
def test_bf16_compute_is_finite_and_close_to_float32(flavour):
  x, mask = _inputs(11, 2, 12, [12, 3])
  params = _random_params(_encoder(flavour), x, mask)
  reference = _run(_encoder(flavour), params, x, mask)
  bf16_encoder = _encoder(flavour, dtype=jnp.bfloat16)
  assert jax.eval_shape(lambda: bf16_encoder.apply(params, x, mask, deterministic=True)
                        ).dtype == jnp.bfloat16
  bf16 = _run(bf16_encoder, params, x, mask)
  assert np.isfinite(bf16).all()
  np.testing.assert_allclose(bf16[mask], reference[mask], atol=0.15, rtol=0.05)


def test_jit_matches_eager_and_dropout_needs_rng():
  layer = transformer.EncoderLayer(d_model=D_MODEL, num_heads=HEADS, mlp_dim=MLP_DIM,
                                   flavour="t5")
  x, mask = _inputs(12, 2, 7, [7, 2])
  params = _random_params(layer, x, mask)
  eager = np.asarray(layer.apply(params, x, mask, deterministic=True))
  np.testing.assert_allclose(_run(layer, params, x, mask), eager, atol=ATOL)
  dropped = _jit_apply(layer, deterministic=False, rngs={"dropout": jax.random.key(1)})(
      params, x, mask)
  assert not np.allclose(dropped, eager, atol=1e-3)


def _stacked(params: dict, num_layers: int) -> dict:
  layers = [params.pop(f"layers_{index}") for index in range(num_layers)]
  return {**params, "layers": jax.tree.map(lambda *xs: jnp.stack(xs), *layers)}


@pytest.mark.parametrize("scan_layers", [True, False])
def test_scan_and_remat_match_unrolled(scan_layers):
  y, y_mask = _inputs(13, 2, 6, [6, 3])
  encoded, encoded_mask = _inputs(14, 2, 5, [5, 2])
  unrolled = _decoder("t5")
  params = _random_params(unrolled, y, y_mask, encoded, encoded_mask)["params"]
  transformed = _decoder("t5", scan_layers=scan_layers, remat=True)
  pack = (lambda tree: _stacked(dict(tree), 2)) if scan_layers else (lambda tree: tree)

  def loss(module, module_params):
    out = module.apply({"params": module_params}, y, y_mask, encoded, encoded_mask,
                       deterministic=True)
    return jnp.sum(out**2), out

  (_, expected), expected_grads = jax.jit(jax.value_and_grad(
      lambda p: loss(unrolled, p), has_aux=True))(params)
  (_, actual), actual_grads = jax.jit(jax.value_and_grad(
      lambda p: loss(transformed, p), has_aux=True))(pack(params))
  np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=ATOL)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4),
               actual_grads, pack(expected_grads))


def test_params_carry_logical_axis_names():
  x, mask = _inputs(15, 1, 4, [4])
  scanned = _encoder("t5", scan_layers=True)
  specs = nn.get_partition_spec(jax.eval_shape(
      lambda: scanned.init(jax.random.key(0), x, mask, deterministic=True)))["params"]
  layer = specs["layers"]["layer"]
  assert tuple(layer["attention"]["query"]) == ("layers", "embed", "heads", "kv")
  assert tuple(layer["attention"]["out"]) == ("layers", "heads", "kv", "embed")
  assert tuple(layer["mlp"]["wi_0"]["kernel"]) == ("layers", "embed", "mlp")
  assert tuple(layer["mlp"]["wo"]["kernel"]) == ("layers", "mlp", "embed")
  assert tuple(layer["mlp_norm"]["scale"]) == ("layers", "embed")
  assert tuple(specs["relative_position_bias"]["embedding"]) == (None, "heads")
  bert_encoder = _encoder("bert")
  bert = nn.get_partition_spec(jax.eval_shape(
      lambda: bert_encoder.init(jax.random.key(0), x, mask, deterministic=True)))["params"]
  attention = bert["layers_0"]["layer"]["attention"]
  assert tuple(attention["query_bias"]) == ("heads", "kv")
  assert tuple(attention["out_bias"]) == ("embed",)


def test_unknown_names_are_rejected():
  x, mask = _inputs(16, 1, 4, [4])
  with pytest.raises(ValueError, match="flavour 'gpt'"):
    _random_params(_encoder("gpt"), x, mask)
  with pytest.raises(ValueError, match="activation 'swish'"):
    _random_params(_encoder("bert", activation="swish"), x, mask)
