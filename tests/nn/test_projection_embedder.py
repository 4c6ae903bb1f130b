"""ProjectionEmbedder against a numpy restatement of seq_flow_lite's bottleneck, plus the registry."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from noembed.inputs import projection as projection_input
from noembed.nn.embedders.projection import ProjectionEmbedder
from noembed.text import projection

F, D = 64, 16


def random_batch(batch, length, seed=0, real=None):
  rng = np.random.default_rng(seed)
  features = rng.integers(-1, 2, (batch, length, F)).astype(np.int8)
  lengths = rng.integers(1, length + 1, batch) if real is None else np.asarray(real)
  mask = np.arange(length)[None] < lengths[:, None]
  return {"features": jnp.asarray(features), "mask": jnp.asarray(mask)}


def init(module, batch):
  return nn.unbox(module.init(jax.random.key(0), batch, deterministic=False))


def reference(variables, batch, train, decay=0.999, eps=1e-9):
  """seq_flow_lite BaseQDenseVarLen + VarLenBatchNormalization + ReLU, in float64 numpy."""
  params = variables["params"]
  mask = np.asarray(batch["mask"], np.float64)[..., None]
  x = np.asarray(batch["features"], np.float64) * mask
  y = (x @ np.asarray(params["kernel"], np.float64) + np.asarray(params["bias"])) * mask
  if train:
    count = mask.sum()
    mean = y.sum((0, 1)) / count
    second = (y * y).sum((0, 1)) / count
  else:
    mean = np.asarray(variables["batch_stats"]["mean"])
    second = np.asarray(variables["batch_stats"]["second_moment"])
  out = (y - mean) / np.sqrt(second + eps) * np.asarray(params["scale"]) + np.asarray(
      params["offset"])
  stats = {"mean": np.asarray(variables["batch_stats"]["mean"]) * (1 - decay) + decay * mean,
           "second_moment": (np.asarray(variables["batch_stats"]["second_moment"])
                             * (1 - decay) + decay * second)}
  return np.maximum(out, 0) * mask, stats


@pytest.mark.parametrize("length", [1, 3, 127, 129])
def test_shapes(length):
  module = ProjectionEmbedder(feature_size=F, d_model=D)
  batch = random_batch(2, length)
  variables = init(module, batch)
  out = module.apply(variables, batch, deterministic=True)
  assert out.x.shape == (2, length, D) and out.x.dtype == jnp.float32
  np.testing.assert_array_equal(out.mask, batch["mask"])


@pytest.mark.parametrize("train", [False, True])
def test_matches_seq_flow_lite_bottleneck(train):
  module = ProjectionEmbedder(feature_size=F, d_model=D)
  batch = random_batch(3, 7, seed=1)
  variables = init(module, batch)
  variables = {"params": variables["params"],
               "batch_stats": {"mean": jnp.full((D,), 0.3), "second_moment": jnp.full((D,), 2.)}}
  out, updates = module.apply(variables, batch, deterministic=not train,
                              mutable=["batch_stats"])
  expected, expected_stats = reference(variables, batch, train)
  np.testing.assert_allclose(out.x, expected, rtol=1e-5, atol=1e-5)   # float32 vs float64
  if train:
    for name in ("mean", "second_moment"):
      np.testing.assert_allclose(updates["batch_stats"][name], expected_stats[name], rtol=1e-5,
                                 atol=1e-6)


@pytest.mark.parametrize("deterministic", [False, True])
def test_padding_never_changes_real_positions(deterministic):
  module = ProjectionEmbedder(feature_size=F, d_model=D)
  short = random_batch(2, 5, seed=2, real=[5, 3])
  rng = np.random.default_rng(3)
  noise = rng.integers(-1, 2, (2, 6, F)).astype(np.int8)
  long_features = np.concatenate([np.asarray(short["features"]), noise], axis=1)
  long_features[1, 3:5] = rng.integers(-1, 2, (2, F))   # garbage under the mask too
  long = {"features": jnp.asarray(long_features),
          "mask": jnp.pad(short["mask"], ((0, 0), (0, 6)))}
  variables = init(module, short)
  short_out, short_stats = module.apply(variables, short, deterministic=deterministic,
                                        mutable=["batch_stats"])
  long_out, long_stats = module.apply(variables, long, deterministic=deterministic,
                                      mutable=["batch_stats"])
  real = np.asarray(short["mask"])
  np.testing.assert_allclose(np.asarray(long_out.x)[:, :5][real], np.asarray(short_out.x)[real],
                             rtol=1e-6, atol=1e-6)
  assert not np.asarray(long_out.x)[~np.asarray(long["mask"])].any()
  for name in ("mean", "second_moment"):
    np.testing.assert_allclose(long_stats["batch_stats"][name],
                               short_stats["batch_stats"][name], rtol=1e-6)


def test_grads_finite_and_nonzero_for_every_param():
  module = ProjectionEmbedder(feature_size=F, d_model=D)
  batch = random_batch(4, 9, seed=4)
  variables = init(module, batch)
  target = jax.random.normal(jax.random.key(1), (4, 9, D))

  def loss(params):
    out, _ = module.apply({**variables, "params": params}, batch, deterministic=False,
                          mutable=["batch_stats"])
    return jnp.sum(out.x * target)

  grads = jax.grad(loss)(variables["params"])
  for name, grad in grads.items():
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0, name


def test_jit_bf16_and_packed_codes():
  texts = ["The quick brown fox", "jumps", ""]
  features, mask = projection.project(texts, F, 8)
  codes, _ = projection.project_packed(texts, F, 8)
  module32 = ProjectionEmbedder(feature_size=F, d_model=D)
  module16 = ProjectionEmbedder(feature_size=F, d_model=D, dtype=jnp.bfloat16)
  batch = {"features": jnp.asarray(features), "mask": jnp.asarray(mask)}
  variables = init(module32, batch)
  apply32 = jax.jit(lambda v, b: module32.apply(v, b, deterministic=True).x)
  apply16 = jax.jit(lambda v, b: module16.apply(v, b, deterministic=True).x)
  x32 = apply32(variables, batch)
  from_codes = apply32(variables, {"codes": jnp.asarray(codes), "mask": batch["mask"]})
  np.testing.assert_array_equal(from_codes, x32)
  x16 = apply16(variables, batch)
  assert x16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(x16, np.float32), x32, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_parameter_count(batch_norm):
  module = ProjectionEmbedder(feature_size=F, d_model=D, batch_norm=batch_norm)
  variables = init(module, random_batch(1, 2))
  count = sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
  assert count == F * D + D + (2 * D if batch_norm else 0)
  assert ("batch_stats" in variables) == batch_norm


@pytest.mark.parametrize("packed", [False, True])
def test_registry_entry(packed):
  method = projection_input
  config = method.default_config()
  config.update(feature_size=F, max_tokens=6, add_bos=True, packed=packed)
  batch = method.encode(["Hello big world", "x"], config, None)
  assert set(batch) == {"codes" if packed else "features", "mask"}
  units = method.masked_units(config)
  assert (units.num_heads, units.vocab_size, units.unit_bytes) == (F, 3, None)
  batch = jax.tree.map(jnp.asarray, batch)
  maskable = units.maskable(batch)
  assert np.asarray(maskable).tolist() == [[False, True, True, True, False, False],
                                           [False, True, False, False, False, False]]
  features, _ = projection.project(["Hello big world", "x"], F, 6, add_bos=True)
  np.testing.assert_array_equal(units.targets(batch), features.astype(np.int32) + 1)
  corrupted = units.corrupt(batch, maskable)
  targets = np.asarray(units.targets(corrupted))
  assert (targets[np.asarray(maskable)] == 1).all()          # masked tokens: all-zero features
  np.testing.assert_array_equal(targets[~np.asarray(maskable)],
                                features.astype(np.int32)[~np.asarray(maskable)] + 1)
  module = method.build_embedder(config, d_model=D, dtype=jnp.float32, param_dtype=jnp.float32)
  out = module.apply(init(module, batch), batch, deterministic=True)
  assert out.x.shape == (2, 6, D)
