"""GBST embedder: parity with charformer-pytorch, a hand-computed example, masks and invariances."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from noembed.nn.embedders.base import Embedded
from noembed.nn.embedders.gbst import GBSTEmbedder

D_MODEL = 8
VOCAB_ROWS = 259
# The options under which GBSTEmbedder computes what charformer-pytorch's GBST computes.
PYTORCH_OPTIONS = dict(conv_kind="depthwise_separable", conv_padding="lookahead", use_bias=True)


def _batch(lengths, total, seed=0, pad_ids="zero"):
  """ids/mask [len(lengths), total]: random byte ids, then padding (id 0, or random garbage)."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, VOCAB_ROWS, size=(len(lengths), total))
  mask = np.arange(total)[None, :] < np.asarray(lengths)[:, None]
  if pad_ids == "zero":
    ids = np.where(mask, ids, 0)
  return {"ids": jnp.asarray(ids, jnp.int32), "mask": jnp.asarray(mask)}


# Params do not depend on the length, so every module is initialised on this one batch (eager
# op compilations are then cached) and applied jitted (one compilation per module and shape).
_INIT_BATCH = _batch([11, 4], 11)


def _init(module, seed=0):
  return module.init(jax.random.key(seed), _INIT_BATCH, deterministic=True)


@functools.partial(jax.jit, static_argnums=0)
def _apply(module, variables, batch) -> Embedded:
  return module.apply(variables, batch, deterministic=True)


# ---------------------------------------------------------------- parity with charformer-pytorch


def _pytorch_gbst(block_sizes, downsample_factor, consensus, seed):
  torch = pytest.importorskip("torch")
  charformer_pytorch = pytest.importorskip("charformer_pytorch")
  torch.manual_seed(seed)
  reference = charformer_pytorch.GBST(
      num_tokens=VOCAB_ROWS, dim=D_MODEL, blocks=tuple(block_sizes),
      downsample_factor=downsample_factor, score_consensus_attn=consensus).eval()
  with torch.no_grad():  # Its scorer bias is shared by all blocks, so the softmax cancels it.
    reference.score_fn[0].bias.fill_(0.7)
  return reference


def _variables_from_pytorch(reference):
  conv = reference.pos_conv[2]
  as_numpy = lambda tensor: jnp.asarray(tensor.detach().numpy())
  return {"params": {
      "embedding": {"embedding": as_numpy(reference.token_emb.weight)},
      "conv": {"kernel": as_numpy(conv.conv.weight.permute(2, 1, 0)),   # [k, 1, D]
               "bias": as_numpy(conv.conv.bias)},
      "pointwise": {"kernel": as_numpy(conv.proj_out.weight[:, :, 0].T),  # [D_in, D_out]
                    "bias": as_numpy(conv.proj_out.bias)},
      "scorer": {"kernel": as_numpy(reference.score_fn[0].weight.T)},
  }}


def _matching_module(block_sizes, downsample_factor, consensus):
  return GBSTEmbedder(
      d_model=D_MODEL, vocab_rows=VOCAB_ROWS, block_sizes=tuple(block_sizes),
      downsample_factor=downsample_factor, conv_kernel_size=max(block_sizes),
      score_calibration="position" if consensus else "none", **PYTORCH_OPTIONS)


@pytest.mark.parametrize("block_sizes,downsample_factor,length", [
    ((1, 2, 3, 4), 2, 1), ((1, 2, 3, 4), 2, 13), ((1, 2, 3, 4), 4, 31), ((1, 3), 3, 7),
    ((2, 4), 2, 10)])
@pytest.mark.parametrize("consensus", [False, True])
def test_matches_charformer_pytorch_on_unpadded_input(block_sizes, downsample_factor, length,
                                                      consensus):
  """fp32, atol 1e-5. Its conv reads padding embeddings, so unpadded input (mask all True)."""
  import torch
  reference = _pytorch_gbst(block_sizes, downsample_factor, consensus, seed=length)
  batch = _batch([length, length], length, seed=length)
  expected_x, expected_mask = reference(
      torch.from_numpy(np.asarray(batch["ids"], np.int64)),
      mask=torch.from_numpy(np.array(batch["mask"])))
  embedded = _apply(_matching_module(block_sizes, downsample_factor, consensus),
                    _variables_from_pytorch(reference), batch)
  np.testing.assert_allclose(embedded.x, expected_x.detach().numpy(), atol=1e-5, rtol=0)
  np.testing.assert_array_equal(embedded.mask, expected_mask.numpy())


@pytest.mark.parametrize("consensus", [False, True])
def test_matches_charformer_pytorch_on_padded_input_with_zero_pad_embedding(consensus):
  """With its pad row zeroed its conv sees zeros past the text, as ours does: then it agrees."""
  import torch
  reference = _pytorch_gbst((1, 2, 3, 4), 2, consensus, seed=3)
  with torch.no_grad():
    reference.token_emb.weight[0].zero_()
  batch = _batch([17, 9, 1, 4], 17, seed=3)
  expected_x, expected_mask = reference(
      torch.from_numpy(np.asarray(batch["ids"], np.int64)),
      mask=torch.from_numpy(np.array(batch["mask"])))
  embedded = _apply(_matching_module((1, 2, 3, 4), 2, consensus),
                    _variables_from_pytorch(reference), batch)
  np.testing.assert_allclose(embedded.x, expected_x.detach().numpy(), atol=1e-5, rtol=0)
  np.testing.assert_array_equal(embedded.mask, expected_mask.numpy())


# ------------------------------------------------------------------------ hand-computed example


def _hand_example(score_calibration):
  """D=1, L=4, blocks (1, 2), d_s=2, identity conv, scorer weight 1: logits are block means."""
  module = GBSTEmbedder(d_model=1, vocab_rows=8, block_sizes=(1, 2), downsample_factor=2,
                        conv_kernel_size=1, score_calibration=score_calibration)
  table = np.zeros((8, 1), np.float32)
  table[3:7, 0] = [1.0, 3.0, 5.0, 11.0]
  variables = {"params": {"embedding": {"embedding": jnp.asarray(table)},
                          "conv": {"kernel": jnp.ones((1, 1, 1))},
                          "scorer": {"kernel": jnp.ones((1, 1))}}}
  batch = {"ids": jnp.array([[3, 4, 5, 6], [3, 4, 5, 6]], jnp.int32),
           "mask": jnp.array([[True] * 4, [True, True, True, False]])}
  return _apply(module, variables, batch)


def _softmax(logits):
  exps = np.exp(np.asarray(logits, np.float64) - np.max(logits))
  return exps / exps.sum()


def test_hand_computed_block_pooling_and_weighting():
  embedded = _hand_example("none")
  e = math.e
  # Row 0: size-1 blocks 1, 3, 5, 11; size-2 blocks (1+3)/2 = 2 and (5+11)/2 = 8.
  weights = [[1 / (1 + e), e / (1 + e)], [e / (1 + e), 1 / (1 + e)],
             [1 / (1 + e**3), e**3 / (1 + e**3)], [e**3 / (1 + e**3), 1 / (1 + e**3)]]
  mixed = [w1 * b1 + w2 * b2 for (w1, w2), b1, b2 in zip(weights, [1, 3, 5, 11], [2, 2, 8, 8])]
  np.testing.assert_allclose(embedded.aux["block_scores"][0], weights, rtol=1e-6)
  np.testing.assert_allclose(embedded.x[0, :, 0], [(mixed[0] + mixed[1]) / 2,
                                                   (mixed[2] + mixed[3]) / 2], rtol=1e-6)
  # Row 1, byte 3 padding: the second size-2 block is the partial block [5] (mean 5, not 2.5),
  # byte 2 weighs two equal candidates 5 and 5, and the last window averages byte 2 alone.
  np.testing.assert_allclose(embedded.aux["block_scores"][1],
                             [weights[0], weights[1], [0.5, 0.5], [0.0, 0.0]], rtol=1e-6)
  np.testing.assert_allclose(embedded.x[1, :, 0], [(mixed[0] + mixed[1]) / 2, 5.0], rtol=1e-6)
  np.testing.assert_array_equal(embedded.mask, [[True, True], [True, True]])


def test_hand_computed_calibrations():
  logits = np.array([[1, 2], [3, 2], [5, 8], [11, 8]], np.float64)
  scores = np.stack([_softmax(row) for row in logits])
  # Paper: P <- softmax(P P^T) P, rows softmaxed over the (all real) positions.
  similarity = scores @ scores.T
  position = np.stack([_softmax(row) for row in similarity]) @ scores
  np.testing.assert_allclose(_hand_example("position").aux["block_scores"][0], position,
                             rtol=1e-5)
  # Mesh-TF block_mixing_mode="score_attention": S * softmax_over_length(|S_i|^2), then softmax.
  attention = _softmax((logits**2).sum(axis=1))
  scaled = np.stack([_softmax(row) for row in logits * attention[:, None]])
  np.testing.assert_allclose(_hand_example("score_attention").aux["block_scores"][0], scaled,
                             rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------- shapes and masks


@pytest.mark.parametrize("length,batch_size", [(1, 1), (3, 3), (127, 2), (129, 1), (1000, 3)])
def test_shapes_and_masks(length, batch_size):
  rng = np.random.default_rng(length + batch_size)
  real = rng.integers(0, length + 1, size=batch_size)
  real[0] = length
  module = GBSTEmbedder(d_model=D_MODEL, vocab_rows=VOCAB_ROWS, downsample_factor=3)
  batch = _batch(real, length, seed=length)
  embedded = _apply(module, _init(module), batch)
  pooled = math.ceil(length / 3)
  assert embedded.x.shape == (batch_size, pooled, D_MODEL)
  np.testing.assert_array_equal(
      embedded.mask, np.arange(pooled)[None, :] < np.ceil(real / 3)[:, None])
  assert np.all(np.isfinite(embedded.x))
  np.testing.assert_array_equal(np.asarray(embedded.x)[~np.asarray(embedded.mask)], 0.0)
  scores = np.asarray(embedded.aux["block_scores"])
  assert scores.shape == (batch_size, length, 4)
  np.testing.assert_allclose(scores.sum(-1), np.asarray(batch["mask"], np.float32), atol=1e-6)


def test_upsample_repeats_and_crops():
  module = GBSTEmbedder(d_model=D_MODEL, vocab_rows=VOCAB_ROWS, downsample_factor=3)
  variables = _init(module)
  embedded = _apply(module, variables, _batch([7, 5], 7))
  hidden = jnp.arange(2 * 3 * D_MODEL, dtype=jnp.float32).reshape(2, 3, D_MODEL)
  upsampled = module.apply(variables, hidden, embedded, deterministic=True, method="upsample")
  np.testing.assert_array_equal(upsampled, np.asarray(hidden)[:, [0, 0, 0, 1, 1, 1, 2]])
  with pytest.raises(ValueError, match="expects 3 positions"):
    module.apply(variables, hidden[:, :2], embedded, deterministic=True, method="upsample")


# ------------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("score_calibration,conv", [
    ("none", dict()), ("position", dict()), ("score_attention", dict()),
    ("none", dict(conv_padding="causal", use_block_position_embedding=True, use_bias=True)),
    ("position", dict(PYTORCH_OPTIONS, conv_kernel_size=4))])
def test_appended_padding_changes_nothing(score_calibration, conv):
  module = GBSTEmbedder(d_model=D_MODEL, vocab_rows=VOCAB_ROWS,
                        score_calibration=score_calibration, **conv)
  lengths = [13, 6, 1, 0]
  short = _batch(lengths, 13, seed=1, pad_ids="garbage")
  long = _batch(lengths, 24, seed=2, pad_ids="garbage")
  long["ids"] = long["ids"].at[:, :13].set(jnp.where(short["mask"], short["ids"],
                                                     long["ids"][:, :13]))
  variables = _init(module)
  short_out, long_out = _apply(module, variables, short), _apply(module, variables, long)
  np.testing.assert_allclose(long_out.x[:, :7], short_out.x, atol=1e-6, rtol=0)
  np.testing.assert_array_equal(long_out.mask[:, :7], short_out.mask)
  assert not np.any(long_out.mask[:, 7:])
  np.testing.assert_allclose(long_out.aux["block_scores"][:, :13],
                             short_out.aux["block_scores"], atol=1e-6, rtol=0)


def test_jit_matches_eager():
  module = GBSTEmbedder(d_model=D_MODEL, vocab_rows=VOCAB_ROWS, score_calibration="position")
  variables = _init(module)
  jitted = _apply(module, variables, _INIT_BATCH)
  eager = module.apply(variables, _INIT_BATCH, deterministic=True)
  np.testing.assert_allclose(jitted.x, eager.x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("score_calibration", ["none", "position", "score_attention"])
def test_bf16_compute_tracks_float32(score_calibration):
  options = dict(d_model=D_MODEL, vocab_rows=VOCAB_ROWS, score_calibration=score_calibration)
  batch = _batch([29, 17], 29)
  variables = _init(GBSTEmbedder(**options))
  reference = _apply(GBSTEmbedder(**options), variables, batch)
  embedded = _apply(GBSTEmbedder(**options, dtype=jnp.bfloat16), variables, batch)
  assert embedded.x.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(embedded.x, np.float32), reference.x,
                             atol=0.05, rtol=0.05)
  np.testing.assert_array_equal(embedded.mask, reference.mask)


@pytest.mark.parametrize("options", [
    dict(),
    dict(use_bias=True, use_block_position_embedding=True, score_calibration="score_attention",
         conv_padding="causal"),
    dict(PYTORCH_OPTIONS, score_calibration="position"),
])
def test_gradients_are_finite_and_nonzero_for_every_param(options):
  module = GBSTEmbedder(d_model=D_MODEL, vocab_rows=VOCAB_ROWS, **options)
  batch = _batch([19, 7, 0], 19)
  params = _init(module)["params"]
  cotangent = jax.random.normal(jax.random.key(1), (3, 10, D_MODEL))

  def loss(params):
    return jnp.sum(_apply(module, {"params": params}, batch).x * cotangent)

  grads = nn.meta.unbox(jax.grad(loss)(params))
  for path, grad in jax.tree_util.tree_leaves_with_path(grads):
    name = jax.tree_util.keystr(path)
    assert np.all(np.isfinite(grad)), name
    assert np.any(grad != 0), name


# ---------------------------------------------------------------------------- params and config


@pytest.mark.parametrize("options", [
    dict(), dict(use_bias=True), dict(conv_kernel_size=3, block_sizes=(1, 2, 5)),
    dict(PYTORCH_OPTIONS), dict(PYTORCH_OPTIONS, use_block_position_embedding=True,
                                max_block_size=6)])
def test_parameter_count_matches_formula(options):
  module = GBSTEmbedder(d_model=D_MODEL, vocab_rows=VOCAB_ROWS, **options)
  k, d = module.conv_kernel_size, D_MODEL
  bias = int(module.use_bias)
  if module.conv_kind == "full":
    conv = k * d * d + bias * d
  else:
    conv = (k * d + bias * d) + (d * d + bias * d)
  positions = max(module.resolved_block_sizes) * d if module.use_block_position_embedding else 0
  expected = VOCAB_ROWS * d + conv + d + positions
  params = _init(module)["params"]
  assert sum(leaf.size for leaf in jax.tree.leaves(nn.meta.unbox(params))) == expected


def test_logical_axes():
  module = GBSTEmbedder(d_model=D_MODEL, vocab_rows=VOCAB_ROWS, use_bias=True)
  params = _init(module)["params"]
  names = {jax.tree_util.keystr(path): leaf.names for path, leaf in
           jax.tree_util.tree_leaves_with_path(params, is_leaf=nn.meta.is_axis_metadata)}
  assert names == {"['conv']['bias']": ("mlp",), "['conv']['kernel']": (None, "embed", "mlp"),
                   "['embedding']['embedding']": ("vocab", "embed"),
                   "['scorer']['kernel']": ("embed", None)}


@pytest.mark.parametrize("options,message", [
    (dict(score_calibration="softmax"), "score_calibration must be one of"),
    (dict(block_sizes=(1, 1)), "block_sizes must be distinct positive ints"),
    (dict(block_sizes=(0, 2)), "block_sizes must be distinct positive ints"),
    (dict(downsample_factor=0), "downsample_factor must be a positive int, got 0"),
    (dict(conv_padding="valid"), "conv_padding must be one of"),
])
def test_bad_config_is_rejected(options, message):
  with pytest.raises(ValueError, match=message):
    _init(GBSTEmbedder(d_model=D_MODEL, **options))


# ---------------------------------------------------------------------------------- registry


def test_registry_entry_builds_the_embedder_and_shares_byte_units():
  gbst_input = pytest.importorskip("noembed.inputs.gbst")
  config = gbst_input.default_config()
  assert set(config) == {"max_length", "add_eos", "vocab_rows", "max_block_size",
                         "downsample_factor", "conv_kernel_size", "score_calibration"}
  config.max_length, config.score_calibration = 16, "position"
  arrays = gbst_input.encode(["héllo", ""], config, None)
  assert arrays["ids"].shape == (2, 16) and arrays["mask"].sum(1).tolist() == [7, 1]
  module = gbst_input.build_embedder(config, d_model=D_MODEL, dtype=jnp.float32,
                                     param_dtype=jnp.float32)
  assert isinstance(module, GBSTEmbedder) and module.score_calibration == "position"
  batch = {key: jnp.asarray(value) for key, value in arrays.items()}
  assert _apply(module, _init(module), batch).x.shape == (2, 8, D_MODEL)
  units = gbst_input.masked_units(config)
  assert (units.key, units.num_heads, units.vocab_size) == ("ids", 1, 259)
  masked = units.maskable(batch) & (jnp.arange(16) % 2 == 0)
  corrupted = units.corrupt(batch, masked)["ids"]
  np.testing.assert_array_equal(corrupted, np.where(masked, 258, arrays["ids"]))
  np.testing.assert_array_equal(units.targets(batch)[..., 0], arrays["ids"])
  np.testing.assert_array_equal(units.unit_bytes(batch), arrays["ids"] >= 3)
