"""CANINE embedder: parity with transformers' CanineModel submodules, shapes, padding, grads.

Parity is float32 with atol 1e-5 against a randomly initialised tiny CanineModel (D=96, 4 heads,
1024 buckets), its weights (all perturbed, so LayerNorm and biases are not trivial) copied in.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import CanineConfig, CanineModel

from noembed.inputs import canine_hash as canine_inputs
from noembed.nn import downsample
from noembed.nn.embedders.canine_hash import CanineHashEmbedder, hash_codepoints
from noembed.text import codepoints

ATOL = 1e-5
D, HEADS, MLP, BUCKETS, RATE = 96, 4, 192, 1024, 4
LENGTHS = (1, 3, 127, 129, 1000)
# "tanh" is the original TF gelu; transformers calls it "gelu_new".
GELU_CASES = [(length, "exact", "gelu") for length in LENGTHS + (8,)] + [(129, "tanh", "gelu_new")]


def _torch_model(hidden_act: str = "gelu") -> CanineModel:
  config = CanineConfig(
      hidden_size=D, num_hidden_layers=1, num_attention_heads=HEADS, intermediate_size=MLP,
      num_hash_buckets=BUCKETS, max_position_embeddings=BUCKETS, hidden_act=hidden_act,
      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  torch.manual_seed(0)
  model = CanineModel(config).eval()
  with torch.no_grad():
    for param in model.parameters():
      param.add_(0.05 * torch.randn_like(param))
  return model


@pytest.fixture(scope="module")
def torch_model():
  return _torch_model()


def _np(tensor: torch.Tensor) -> np.ndarray:
  return tensor.detach().numpy()


def _norm(layer_norm) -> dict:
  return {"scale": _np(layer_norm.weight), "bias": _np(layer_norm.bias)}


def _conv(conv) -> dict:
  return {"kernel": _np(conv.weight).transpose(2, 1, 0), "bias": _np(conv.bias)}


def _dense(dense) -> dict:
  return {"kernel": _np(dense.weight).T, "bias": _np(dense.bias)}


def _params_from_torch(model: CanineModel) -> dict:
  embeddings = model.char_embeddings
  params = {f"hash_embeddings_{k}": {
      "embedding": _np(getattr(embeddings, f"HashBucketCodepointEmbedder_{k}").weight)}
            for k in range(model.config.num_hash_functions)}
  params["position_embedding"] = {"embedding": _np(embeddings.char_position_embeddings.weight)}
  params["token_type_embedding"] = {"embedding": _np(embeddings.token_type_embeddings.weight)}
  params["embedding_norm"] = _norm(embeddings.LayerNorm)
  layer = model.initial_char_encoder.layer[0]
  attention = {}
  for name in ("query", "key", "value"):
    dense = getattr(layer.attention.self, name)
    attention[name] = _np(dense.weight).T.reshape(D, HEADS, D // HEADS)
    attention[f"{name}_bias"] = _np(dense.bias).reshape(HEADS, D // HEADS)
  attention["out"] = _np(layer.attention.output.dense.weight).T.reshape(HEADS, D // HEADS, D)
  attention["out_bias"] = _np(layer.attention.output.dense.bias)
  params["char_encoder"] = {
      "attention": attention, "attention_norm": _norm(layer.attention.output.LayerNorm),
      "mlp": {"wi": _dense(layer.intermediate.dense), "wo": _dense(layer.output.dense)},
      "mlp_norm": _norm(layer.output.LayerNorm)}
  params["chars_to_molecules"] = {"conv": _conv(model.chars_to_molecules.conv),
                                  "norm": _norm(model.chars_to_molecules.LayerNorm)}
  params["molecules_to_chars"] = {"conv": _conv(model.projection.conv),
                                  "norm": _norm(model.projection.LayerNorm)}
  return jax.tree.map(jnp.asarray, params)


@pytest.fixture(scope="module")
def params(torch_model):
  return _params_from_torch(torch_model)


def _embedder(**overrides) -> CanineHashEmbedder:
  fields = dict(d_model=D, num_heads=HEADS, mlp_dim=MLP, num_buckets=BUCKETS,
                max_positions=BUCKETS, dropout_rate=0.0)
  return CanineHashEmbedder(**{**fields, **overrides})


def _embed_and_upsample(module, inputs, hidden=None, *, deterministic=True):
  embedded = module(inputs, deterministic=deterministic)
  hidden = embedded.x if hidden is None else hidden
  return embedded, module.upsample(hidden, embedded, deterministic=deterministic)


def _inputs(batch: int, length: int, lengths=None, seed: int = 0) -> dict:
  """[CLS] + random code points (all planes) + padding (ids 0) after `lengths` characters."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, 0x110000, (batch, length)).astype(np.int32)
  ids[:, 0] = codepoints.CLS
  lengths = np.full(batch, length) if lengths is None else np.asarray(lengths)
  mask = np.arange(length)[None] < lengths[:, None]
  token_type_ids = rng.integers(0, 16, (batch, length)).astype(np.int32)
  return {"ids": np.where(mask, ids, 0), "mask": mask,
          "token_type_ids": np.where(mask, token_type_ids, 0)}


def _padded_to_rate(x: np.ndarray, rate: int, fill) -> np.ndarray:
  extra = -x.shape[1] % rate
  return np.concatenate([x, np.broadcast_to(fill, (x.shape[0], extra, *x.shape[2:]))], axis=1)


def test_hashes_match_reference_and_golden_values(torch_model):
  ids = np.array([[0, 97, 0xE000, 0x10FFFF, 0x1F600]], np.int64)
  for num_hashes, num_buckets in ((8, 16384), (16, 1024), (3, 7)):
    ours = np.asarray(hash_codepoints(jnp.asarray(ids, jnp.int32), num_hashes, num_buckets))
    reference = torch_model.char_embeddings._hash_bucket_tensors(
        torch.from_numpy(ids), num_hashes=num_hashes, num_buckets=num_buckets)
    np.testing.assert_array_equal(ours, np.stack([_np(t) for t in reference], axis=-1))
  golden = np.asarray(hash_codepoints(jnp.array([[97]]), 2, 16384))
  np.testing.assert_array_equal(golden, [[[98 * 31 % 16384, 98 * 43 % 16384]]])
  with pytest.raises(ValueError, match="num_hash_functions"):
    hash_codepoints(jnp.zeros((1, 1), jnp.int32), 17, 16384)


@pytest.mark.parametrize("length", LENGTHS)
def test_char_embeddings_match_canine_embeddings(torch_model, params, length):
  inputs = _inputs(2, length)
  ours = _embedder().apply(
      {"params": params}, inputs,
      method=lambda module, x: module.embed_characters(x, deterministic=True))
  reference = torch_model.char_embeddings(
      input_ids=torch.from_numpy(inputs["ids"]).long(),
      token_type_ids=torch.from_numpy(inputs["token_type_ids"]).long())
  np.testing.assert_allclose(np.asarray(ours), _np(reference), atol=ATOL, rtol=0)


def _reference_pipeline(model: CanineModel, inputs: dict):
  """transformers' char embeddings -> local layer -> molecules, and its molecule mask, on the
  inputs padded to a multiple of the rate (char states cut back to the input length)."""
  length = inputs["ids"].shape[1]
  padded = {key: torch.from_numpy(_padded_to_rate(value, RATE, 0)) for key, value in
            inputs.items()}
  mask = padded["mask"].float()
  embedded = model.char_embeddings(input_ids=padded["ids"].long(),
                                   token_type_ids=padded["token_type_ids"].long())
  attention_mask = model._create_3d_attention_mask_from_input_mask(embedded, mask)
  char_states = model.initial_char_encoder(embedded, attention_mask=attention_mask)
  char_states = char_states.last_hidden_state
  molecules = model.chars_to_molecules(char_states)
  molecule_mask = model._downsample_attention_mask(mask, downsampling_rate=RATE)
  return char_states[:, :length], molecules, molecule_mask


@pytest.mark.parametrize("length,lengths", [
    (128, None), (256, None), (1000, None), (129, None), (1000, (1000, 517, 3)),
    (384, (130, 256, 1))])
def test_embedder_matches_canine_model_pipeline(torch_model, params, length, lengths):
  """Local layer (blocks of 128), downsampling and molecule mask; with padding, the local layer
  is compared at real characters and the molecules at real molecules only."""
  inputs = _inputs(3 if lengths else 2, length, lengths)
  embedded = jax.jit(lambda p, x: _embedder().apply(p, x, deterministic=True))(
      {"params": params}, inputs)
  char_states, molecules, molecule_mask = _reference_pipeline(torch_model, inputs)
  real = inputs["mask"]
  np.testing.assert_allclose(np.asarray(embedded.aux["char_states"])[real],
                             _np(char_states)[real], atol=ATOL, rtol=0)
  np.testing.assert_array_equal(np.asarray(embedded.mask), _np(molecule_mask) > 0)
  real_molecules = np.asarray(embedded.mask)
  np.testing.assert_allclose(np.asarray(embedded.x)[real_molecules],
                             _np(molecules)[real_molecules], atol=ATOL, rtol=0)
  if lengths is None:
    np.testing.assert_allclose(np.asarray(embedded.x), _np(molecules), atol=ATOL, rtol=0)


@pytest.mark.parametrize("length,gelu,hidden_act", GELU_CASES)
def test_downsampling_matches_characters_to_molecules(length, gelu, hidden_act):
  """Any length equals the reference on the input padded to a multiple of the rate, whatever
  the padding holds; the molecule mask equals the reference's max pool of the padded mask."""
  model = _torch_model(hidden_act)
  rng = np.random.default_rng(length)
  chars = rng.normal(size=(2, length, D)).astype(np.float32)
  char_mask = rng.random((2, length)) < 0.7
  module = downsample.CharactersToMolecules(d_model=D, rate=RATE, gelu=gelu)
  params = {"conv": _conv(model.chars_to_molecules.conv),
            "norm": _norm(model.chars_to_molecules.LayerNorm)}
  ours = module.apply({"params": params}, chars)
  garbage = rng.normal(size=(D,)).astype(np.float32)
  reference = model.chars_to_molecules(torch.from_numpy(_padded_to_rate(chars, RATE, garbage)))
  assert ours.shape == (2, -(-length // RATE), D)
  np.testing.assert_allclose(np.asarray(ours), _np(reference), atol=ATOL, rtol=0)
  reference_mask = model._downsample_attention_mask(
      torch.from_numpy(_padded_to_rate(char_mask, RATE, False)).float(), downsampling_rate=RATE)
  np.testing.assert_array_equal(np.asarray(downsample.downsample_mask(char_mask, RATE)),
                                _np(reference_mask) > 0)


@pytest.mark.parametrize("length,gelu,hidden_act", GELU_CASES)
def test_upsampling_matches_repeat_molecules_and_conv_projection(length, gelu, hidden_act):
  """Without padding: `_repeat_molecules` (on the buffer padded to a multiple of the rate, cut
  back) then `ConvProjection`. With padding: each example as the reference sees it unpadded
  (its real molecules repeated over a buffer of whole chunks), the concat zeroed at padding."""
  model = _torch_model(hidden_act)
  rng = np.random.default_rng(length)
  molecules = rng.normal(size=(2, -(-length // RATE), D)).astype(np.float32)
  chars = rng.normal(size=(2, length, D)).astype(np.float32)
  padded_length = length + (-length % RATE)
  repeated = model._repeat_molecules(torch.from_numpy(molecules), padded_length)[:, :length]
  concat = torch.cat([torch.from_numpy(chars), repeated], dim=-1)
  module = downsample.MoleculesToCharacters(d_model=D, rate=RATE, kernel_size=4, gelu=gelu,
                                            dropout_rate=0.0)
  params = {"conv": _conv(model.projection.conv), "norm": _norm(model.projection.LayerNorm)}
  full_mask = np.ones((2, length), bool)
  ours = module.apply({"params": params}, molecules, chars, full_mask, deterministic=True)
  np.testing.assert_allclose(np.asarray(ours), _np(model.projection(concat)), atol=ATOL, rtol=0)
  lengths = [length, max(length // 2, 1)]
  char_mask = np.arange(length)[None] < np.array(lengths)[:, None]
  ours = module.apply({"params": params}, molecules, chars, char_mask, deterministic=True)
  per_example = []
  for index, real in enumerate(lengths):
    real_molecules = -(-real // RATE)
    unpadded = model._repeat_molecules(torch.from_numpy(molecules[index:index + 1,
                                                                  :real_molecules]),
                                       real_molecules * RATE)[:, :real]
    per_example.append(torch.cat([unpadded, repeated[index:index + 1, real:]], dim=1))
  concat = torch.cat([torch.from_numpy(chars), torch.cat(per_example)], dim=-1)
  zeroed = concat * torch.from_numpy(char_mask)[..., None]
  np.testing.assert_allclose(np.asarray(ours), _np(model.projection(zeroed)), atol=ATOL, rtol=0)


def test_repeat_molecules_with_a_mask_ignores_padding_molecules():
  molecules = np.random.default_rng(1).normal(size=(1, 5, 3)).astype(np.float32)
  mask = np.array([[True, True, True, False, False]])
  ours = np.asarray(downsample.repeat_molecules(molecules, 20, RATE, mask))
  np.testing.assert_array_equal(ours[0, :4], np.repeat(molecules[0, 1:2], 4, axis=0))
  np.testing.assert_array_equal(ours[0, 4:], np.repeat(molecules[0, 2:3], 16, axis=0))


def test_repeat_molecules_equals_reference_at_multiples_of_the_rate(torch_model):
  molecules = np.random.default_rng(0).normal(size=(1, 5, 3)).astype(np.float32)
  reference = torch_model._repeat_molecules(torch.from_numpy(molecules), 20)
  np.testing.assert_array_equal(np.asarray(downsample.repeat_molecules(molecules, 20, RATE)),
                                _np(reference))
  with pytest.raises(ValueError, match="5 molecules"):
    downsample.repeat_molecules(molecules, 24, RATE)


def _apply_jit(module):
  return jax.jit(lambda p, x: module.apply({"params": p}, x, method=_embed_and_upsample))


@pytest.mark.parametrize("batch", (1, 3))
@pytest.mark.parametrize("length", LENGTHS)
def test_shapes(batch, length):
  inputs = _inputs(batch, length)
  module = _embedder()
  variables = jax.eval_shape(
      lambda: module.init(jax.random.key(0), inputs, method=_embed_and_upsample))
  embedded, chars = jax.eval_shape(
      lambda v: module.apply(v, inputs, method=_embed_and_upsample), variables)
  assert embedded.x.shape == (batch, -(-length // RATE), D)
  assert embedded.mask.shape == (batch, -(-length // RATE)) and embedded.mask.dtype == bool
  assert embedded.aux["char_states"].shape == (batch, length, D)
  assert embedded.aux["char_mask"].shape == (batch, length)
  assert chars.shape == (batch, length, D)


@pytest.mark.parametrize("length", (1, 3, 129))
def test_masks_and_finite_outputs(params, length):
  lengths = np.minimum([length, 1, 6], length)
  inputs = _inputs(3, length, lengths, seed=length)
  embedded, chars = _apply_jit(_embedder())(params, inputs)
  expected_mask = np.arange(-(-length // RATE))[None] * RATE < lengths[:, None]
  np.testing.assert_array_equal(np.asarray(embedded.mask), expected_mask)
  np.testing.assert_array_equal(np.asarray(embedded.aux["char_mask"]), inputs["mask"])
  assert np.isfinite(np.asarray(embedded.x)).all() and np.isfinite(np.asarray(chars)).all()


@pytest.mark.parametrize("real,short,long", [
    (1, 1, 9), (3, 5, 130), (127, 133, 257), (129, 256, 1000)])
def test_padding_does_not_change_real_positions(params, real, short, long):
  """Appending padding leaves char states, molecules, masks and upsampled characters at real
  positions unchanged (each example's last real chunk reads its last real molecule)."""
  apply = _apply_jit(_embedder())
  base = _inputs(1, long, [real], seed=real)
  short_inputs = {key: value[:, :short] for key, value in base.items()}
  (short_embedded, short_chars), (long_embedded, long_chars) = (
      apply(params, short_inputs), apply(params, base))
  molecules = short_embedded.x.shape[1]
  np.testing.assert_array_equal(np.asarray(long_embedded.mask)[:, :molecules],
                                np.asarray(short_embedded.mask))
  real_molecules = np.asarray(short_embedded.mask)
  np.testing.assert_allclose(np.asarray(long_embedded.x)[:, :molecules][real_molecules],
                             np.asarray(short_embedded.x)[real_molecules], atol=ATOL, rtol=0)
  np.testing.assert_allclose(np.asarray(long_embedded.aux["char_states"])[:, :real],
                             np.asarray(short_embedded.aux["char_states"])[:, :real],
                             atol=ATOL, rtol=0)
  np.testing.assert_allclose(np.asarray(long_chars)[:, :real],
                             np.asarray(short_chars)[:, :real], atol=ATOL, rtol=0)


def test_every_parameter_gets_a_finite_nonzero_gradient(params):
  inputs = _inputs(2, 133, [133, 40])
  module = _embedder(dropout_rate=0.1)
  weights = jax.random.normal(jax.random.key(2), (2, 133, D))

  def loss(params):
    embedded, chars = module.apply({"params": params}, inputs, method=_embed_and_upsample,
                                   deterministic=False, rngs={"dropout": jax.random.key(3)})
    molecule_loss = jnp.sum(jnp.where(embedded.mask[..., None], embedded.x, 0) ** 2)
    return molecule_loss + jnp.sum(jnp.where(inputs["mask"][..., None], chars * weights, 0))

  grads = jax.jit(jax.grad(loss))(params)
  for path, grad in jax.tree_util.tree_leaves_with_path(grads):
    grad = np.asarray(grad)
    assert np.isfinite(grad).all(), jax.tree_util.keystr(path)
    assert np.abs(grad).max() > 0, jax.tree_util.keystr(path)


def test_bfloat16_compute_stays_close_to_float32(params):
  inputs = _inputs(2, 300, [300, 77])
  (x32, chars32), (x16, chars16) = [
      (embedded.x, chars) for embedded, chars in
      (_apply_jit(_embedder(dtype=dtype))(params, inputs) for dtype in (jnp.float32,
                                                                         jnp.bfloat16))]
  assert x16.dtype == jnp.bfloat16 and chars16.dtype == jnp.bfloat16
  for full, half in ((x32, x16), (chars32, chars16)):
    error = np.abs(np.asarray(full) - np.asarray(half, np.float32))
    assert error.max() < 0.25 and error.mean() < 0.02, (error.max(), error.mean())


def _expected_param_count(d, mlp, buckets, positions, type_vocab, rate, kernel):
  embeddings = buckets * d + positions * d + type_vocab * d + 2 * d
  local_layer = 4 * (d * d + d) + 2 * d * mlp + mlp + d + 4 * d
  downsampling = rate * d * d + d + 2 * d
  upsampling = kernel * 2 * d * d + d + 2 * d
  return embeddings + local_layer + downsampling + upsampling


def _count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _param_shapes(module) -> dict:
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), _inputs(1, 8),
                                              method=_embed_and_upsample))
  return nn.meta.unbox(shapes)["params"]


def test_parameter_counts_match_formulas_and_reference(torch_model, params):
  tiny = _param_shapes(_embedder())
  assert jax.tree.map(lambda x: x.shape, tiny) == jax.tree.map(lambda x: x.shape, params)
  expected = _expected_param_count(D, MLP, BUCKETS, BUCKETS, 16, RATE, 4)
  assert _count(tiny) == expected
  reference_modules = (torch_model.char_embeddings, torch_model.initial_char_encoder,
                       torch_model.chars_to_molecules, torch_model.projection)
  assert sum(p.numel() for m in reference_modules for p in m.parameters()) == expected

  default = _param_shapes(CanineHashEmbedder(d_model=768, num_heads=12, mlp_dim=3072))
  tables = [default[f"hash_embeddings_{k}"]["embedding"] for k in range(8)]
  assert [t.shape for t in tables] == [(16384, 96)] * 8
  assert _count(default) == _expected_param_count(768, 3072, 16384, 16384, 16, 4, 4)


def test_logical_axes_use_only_known_names():
  known = {"batch", "length", "embed", "mlp", "heads", "kv", "vocab", "buckets", "features",
           "layers", None}
  variables = jax.eval_shape(lambda: _embedder().init(jax.random.key(0), _inputs(1, 8),
                                                      method=_embed_and_upsample))
  boxes = jax.tree.leaves(variables, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert all(isinstance(box, nn.LogicallyPartitioned) for box in boxes)
  assert set().union(*(box.names for box in boxes)) <= known
  assert variables["params"]["hash_embeddings_0"]["embedding"].names == ("buckets", "embed")
  assert variables["params"]["position_embedding"]["embedding"].names == (None, "embed")


def test_config_errors_name_the_bad_value():
  with pytest.raises(ValueError, match="num_hash_functions=7"):
    _embedder(num_hash_functions=7).init(jax.random.key(0), _inputs(1, 8), deterministic=True)
  with pytest.raises(ValueError, match="'fast'"):
    _embedder(gelu="fast").init(jax.random.key(0), _inputs(1, 8), deterministic=True)
  with pytest.raises(ValueError, match="max_positions=1024"):
    _embedder().init(jax.random.key(0), _inputs(1, 1025), deterministic=True)


def test_registry_entry_encodes_builds_and_masks():
  config = canine_inputs.default_config()
  config.max_length = 12
  batch = canine_inputs.encode(["héllo", ""], config)
  assert set(batch) == {"ids", "mask", "token_type_ids"}
  assert batch["ids"][0, 0] == codepoints.CLS and batch["ids"][0, 6] == codepoints.SEP
  embedder = canine_inputs.build_embedder(config, d_model=64, dtype=jnp.float32,
                                          param_dtype=jnp.float32)
  assert isinstance(embedder, CanineHashEmbedder) and embedder.mlp_dim == 256
  units = canine_inputs.masked_units(config)
  assert (units.key, units.num_heads, units.vocab_size, units.unit_bytes) == (
      "ids", 8, 16384, None)
  maskable = np.asarray(units.maskable(batch))
  np.testing.assert_array_equal(maskable[0], (np.arange(12) >= 1) & (np.arange(12) <= 5))
  assert not maskable[1].any()
  corrupted = units.corrupt(batch, jnp.asarray(maskable))
  np.testing.assert_array_equal(np.asarray(corrupted["ids"]),
                                np.where(maskable, codepoints.MASK, batch["ids"]))
  targets = np.asarray(units.targets(batch))
  assert targets.shape == (2, 12, 8) and targets.dtype == np.int32
  np.testing.assert_array_equal(targets[0, 1], [(ord("h") + 1) * p % 16384 for p in
                                                (31, 43, 59, 61, 73, 97, 103, 113)])
