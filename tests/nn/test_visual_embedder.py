"""Tests for noembed.nn.embedders.visual (VTR, esalesky/visrep) and its registry entry."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from noembed.inputs import visual as visual_method
from noembed.nn.embedders.visual import VisualEmbedder

HEIGHT, WIDTH, D_MODEL = 8, 6, 16
LOGICAL_NAMES = {"batch", "length", "embed", "mlp", "heads", "kv", "vocab", "buckets", "features",
                 "layers", None}


def make_inputs(lengths, num_slices, seed=0):
  rng = np.random.default_rng(seed)
  slices = rng.integers(0, 256, (len(lengths), num_slices, HEIGHT, WIDTH), dtype=np.uint8)
  mask = np.arange(num_slices)[None, :] < np.asarray(lengths)[:, None]
  return {"slices": jnp.asarray(slices), "mask": jnp.asarray(mask)}


def init(module, inputs):
  return module.init(jax.random.key(0), inputs, deterministic=False)


def train_apply(module, variables, inputs):
  return module.apply(variables, inputs, deterministic=False, mutable=["batch_stats"])


def eval_apply(module, variables, inputs):
  return module.apply(variables, inputs, deterministic=True)


class VisrepEmbedder(torch.nn.Module):
  """visrep's DirectOCR / NLayerOCR (fairseq/modules/visual.py), channels generalised, then the
  encoder's embed_scale and fairseq sinusoidal positions (visual_transformer.py)."""

  def __init__(self, num_convolutions, channels, height, width, embed_dim, normalize):
    super().__init__()
    ops, in_channels = [], 1
    for _ in range(num_convolutions):
      ops.append(torch.nn.Conv2d(in_channels, channels, kernel_size=(3, 3), padding=1))
      if normalize:
        ops.append(torch.nn.BatchNorm2d(channels))
      ops.append(torch.nn.ReLU())
      in_channels = channels
    self.embedder = torch.nn.Sequential(*ops)
    self.bridge = torch.nn.Linear(in_channels * height * width, embed_dim)
    self.embed_dim = embed_dim

  def forward(self, image_slice):  # [B, N, 1, H, W] in [0, 1], all real
    batch, length, channels, height, width = image_slice.shape
    pixels = image_slice.view(batch * length, channels, height, width)
    x = self.embedder(pixels).reshape(batch * length, -1)
    x = self.bridge(x).view(batch, length, self.embed_dim)
    return math.sqrt(self.embed_dim) * x + self.positions(length)

  def positions(self, length, padding_idx=1):  # fairseq SinusoidalPositionalEmbedding
    half_dim = self.embed_dim // 2
    emb = math.log(10000) / (half_dim - 1)
    emb = torch.exp(torch.arange(half_dim, dtype=torch.float) * -emb)
    emb = torch.arange(padding_idx + 1 + length, dtype=torch.float).unsqueeze(1) * emb.unsqueeze(0)
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    return emb[padding_idx + 1:padding_idx + 1 + length]


def copy_into_torch(reference, params, batch_stats):
  convs = [m for m in reference.embedder if isinstance(m, torch.nn.Conv2d)]
  norms = [m for m in reference.embedder if isinstance(m, torch.nn.BatchNorm2d)]
  as_torch = lambda array: torch.from_numpy(np.array(array))
  with torch.no_grad():
    for layer, (conv, norm) in enumerate(zip(convs, norms)):
      conv.weight.copy_(as_torch(params[f"conv_{layer}"]["kernel"]).permute(3, 2, 0, 1))
      conv.bias.copy_(as_torch(params[f"conv_{layer}"]["bias"]))
      norm.weight.copy_(as_torch(params[f"norm_{layer}"]["scale"]))
      norm.bias.copy_(as_torch(params[f"norm_{layer}"]["bias"]))
      norm.running_mean.copy_(as_torch(batch_stats[f"norm_{layer}"]["mean"]))
      norm.running_var.copy_(as_torch(batch_stats[f"norm_{layer}"]["var"]))
    reference.bridge.weight.copy_(as_torch(params["bridge"]["kernel"]).T)
    reference.bridge.bias.copy_(as_torch(params["bridge"]["bias"]))


@pytest.mark.parametrize("variant,channels", [("direct", 1), ("conv1", 1), ("conv2", 2)])
def test_matches_visrep_reference_in_train_and_eval_mode(variant, channels):
  """float32 parity, atol 1e-4 on outputs of magnitude ~sqrt(d_model)."""
  num_convolutions = {"direct": 0, "conv1": 1, "conv2": 2}[variant]
  module = VisualEmbedder(variant=variant, channels=channels, d_model=D_MODEL)
  inputs = make_inputs([4, 4], 4)  # torch's batch norm has no mask: all slices real
  variables = nn.meta.unbox(init(module, inputs))
  reference = VisrepEmbedder(num_convolutions, channels, HEIGHT, WIDTH, D_MODEL, True)
  copy_into_torch(reference, variables["params"], variables.get("batch_stats", {}))
  pixels = torch.from_numpy(np.asarray(inputs["slices"], np.float32) / 255.0)[:, :, None]
  out, updated = train_apply(module, variables, inputs)
  reference.train()
  expected = reference(pixels).detach().numpy()
  np.testing.assert_allclose(np.asarray(out.x), expected, atol=1e-4, rtol=1e-5)
  for layer in range(num_convolutions):
    norm = [m for m in reference.embedder if isinstance(m, torch.nn.BatchNorm2d)][layer]
    stats = nn.meta.unbox(updated["batch_stats"])[f"norm_{layer}"]
    np.testing.assert_allclose(stats["mean"], norm.running_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(stats["var"], norm.running_var.numpy(), atol=1e-6)
  reference.eval()
  variables = {**variables, **nn.meta.unbox(updated)}
  out = eval_apply(module, variables, inputs)
  np.testing.assert_allclose(np.asarray(out.x), reference(pixels).detach().numpy(),
                             atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("variant,num_slices", [
    ("conv2", 1), ("conv2", 3), ("conv2", 127), ("conv2", 129), ("direct", 129), ("conv1", 127)])
def test_shapes(variant, num_slices):
  module = VisualEmbedder(variant=variant, channels=2, d_model=D_MODEL)
  inputs = make_inputs([num_slices, max(1, num_slices // 2)], num_slices)
  out, _ = train_apply(module, init(module, inputs), inputs)
  assert out.x.shape == (2, num_slices, D_MODEL) and out.x.dtype == jnp.float32
  np.testing.assert_array_equal(out.mask, inputs["mask"])
  assert not np.asarray(out.x)[~np.asarray(inputs["mask"])].any()


@pytest.mark.parametrize("variant,deterministic", [
    ("direct", False), ("conv1", False), ("conv1", True), ("conv2", False)])
def test_padding_never_changes_real_positions(variant, deterministic):
  module = VisualEmbedder(variant=variant, channels=2, d_model=D_MODEL)
  short = make_inputs([3, 1], 4)
  rng = np.random.default_rng(1)
  noise = rng.integers(0, 256, (2, 8, HEIGHT, WIDTH), dtype=np.uint8)
  mask = np.zeros((2, 8), bool)
  mask[:, :4] = short["mask"]
  padded = np.pad(short["slices"], ((0, 0), (0, 4), (0, 0), (0, 0)))
  slices = np.where(mask[..., None, None], padded, noise)
  long = {"slices": jnp.asarray(slices), "mask": jnp.asarray(mask)}
  variables = init(module, short)
  if deterministic:
    x_short = eval_apply(module, variables, short).x
    x_long = eval_apply(module, variables, long).x
  else:
    (out_short, stats_short), (out_long, stats_long) = (
        train_apply(module, variables, short), train_apply(module, variables, long))
    x_short, x_long = out_short.x, out_long.x
    for a, b in zip(jax.tree.leaves(stats_short), jax.tree.leaves(stats_long)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  real = np.asarray(short["mask"])
  np.testing.assert_allclose(np.asarray(x_long)[:, :4][real], np.asarray(x_short)[real],
                             rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("variant", ["direct", "conv2"])
def test_gradients_finite_and_nonzero(variant):
  module = VisualEmbedder(variant=variant, channels=2, d_model=D_MODEL)
  inputs = make_inputs([3, 1], 4)
  variables = init(module, inputs)

  def loss(params):
    out, _ = module.apply({**variables, "params": params}, inputs, deterministic=False,
                          mutable=["batch_stats"])
    return jnp.sum(jnp.where(out.mask[..., None], out.x, 0.0) ** 2)

  grads = nn.meta.unbox(jax.grad(loss)(variables["params"]))
  for path, grad in jax.tree_util.tree_leaves_with_path(grads):
    assert np.isfinite(grad).all(), path
    assert np.abs(grad).max() > 0, path


@pytest.mark.parametrize("variant", ["conv2"])
def test_jit_and_bfloat16(variant):
  inputs = make_inputs([3, 1], 4)
  module32 = VisualEmbedder(variant=variant, channels=2, d_model=D_MODEL)
  module16 = VisualEmbedder(variant=variant, channels=2, d_model=D_MODEL, dtype=jnp.bfloat16)
  variables = init(module32, inputs)
  out16, _ = jax.jit(lambda v, x: train_apply(module16, v, x))(variables, inputs)
  out32, _ = train_apply(module32, variables, inputs)
  assert out16.x.dtype == jnp.bfloat16
  x16 = np.asarray(out16.x, np.float32)
  assert np.isfinite(x16).all()
  np.testing.assert_allclose(x16, np.asarray(out32.x), atol=0.1 * np.abs(out32.x).max())


@pytest.mark.parametrize("variant,channels", [("direct", 1), ("conv1", 1), ("conv1", 4),
                                              ("conv2", 1), ("conv2", 4)])
def test_parameter_counts(variant, channels):
  module = VisualEmbedder(variant=variant, channels=channels, d_model=D_MODEL)
  variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, deterministic=False),
                             make_inputs([2], 2))
  count = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"]))
  pixels = HEIGHT * WIDTH
  if variant == "direct":
    expected = pixels * D_MODEL + D_MODEL
  else:
    blocks = {"conv1": 1, "conv2": 2}[variant]
    conv = (9 * 1 * channels + channels) + (blocks - 1) * (9 * channels * channels + channels)
    expected = conv + blocks * 2 * channels + channels * pixels * D_MODEL + D_MODEL
  assert count == expected
  stats = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables.get("batch_stats", {})))
  assert stats == (0 if variant == "direct" else 2 * channels * {"conv1": 1, "conv2": 2}[variant])


def test_logical_axis_names_and_torch_default_init():
  module = VisualEmbedder(variant="conv2", channels=2, d_model=D_MODEL)
  variables = init(module, make_inputs([3, 1], 4))
  specs = nn.get_partition_spec(variables)
  is_spec = lambda leaf: isinstance(leaf, jax.sharding.PartitionSpec)
  for spec in jax.tree.leaves(specs, is_leaf=is_spec):
    assert set(spec) <= LOGICAL_NAMES, spec
  params = nn.meta.unbox(variables["params"])
  for name, fan_in in (("conv_0", 9), ("conv_1", 18), ("bridge", 2 * HEIGHT * WIDTH)):
    for leaf in (params[name]["kernel"], params[name]["bias"]):
      assert np.abs(leaf).max() <= 1 / math.sqrt(fan_in)


def test_bad_variant_is_named():
  with pytest.raises(ValueError, match="'conv3'"):
    jax.eval_shape(lambda x: init(VisualEmbedder(variant="conv3"), x), make_inputs([1], 1))


# Registry entry.

def test_registry_entry_encodes_builds_and_masks():
  config = visual_method.default_config()
  config.max_slices = 4
  batch = visual_method.encode(["hello world", ""], config)
  assert batch["slices"].shape == (2, 4, 21, 30) and batch["mask"].shape == (2, 4)
  embedder = visual_method.build_embedder(config, d_model=D_MODEL, dtype=jnp.float32,
                                          param_dtype=jnp.float32)
  assert isinstance(embedder, VisualEmbedder) and embedder.variant == "conv1"
  batch = {key: jnp.asarray(value) for key, value in batch.items()}
  out, _ = train_apply(embedder, init(embedder, batch), batch)
  assert out.x.shape == (2, 4, D_MODEL)

  units = visual_method.masked_units(config)
  assert units.key == "slices" and units.num_heads == 21 * 30 and units.vocab_size == 2
  assert units.unit_bytes is None
  np.testing.assert_array_equal(units.maskable(batch), batch["mask"])
  masked = jnp.zeros((2, 4), bool).at[0, 0].set(True)
  corrupted = units.corrupt(batch, masked)["slices"]
  assert (corrupted[0, 0] == 255).all() and (batch["slices"][0, 0] < 128).any()
  np.testing.assert_array_equal(corrupted[0, 1:], batch["slices"][0, 1:])
  targets = units.targets(batch)
  assert targets.shape == (2, 4, 21 * 30) and targets.dtype == jnp.int32
  np.testing.assert_array_equal(targets[0, 0], (batch["slices"][0, 0] < 128).reshape(-1))
