"""Every registered input method: builds by name, keeps the Embedder contract, shards on a mesh."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from configs import quickstart
from noembed import inputs
from noembed.nn.embedders import Embedded
from noembed.train import dry_run
from noembed.train import mesh as mesh_lib

METHODS = ("byte", "canine_hash", "gbst", "projection", "visual", "subword")
TEXTS = ["Hello, world!", "Всеобщая декларация", "", "مرحبا بالعالم", "नमस्ते दुनिया 🙂",
         "x" * 300, "一二三四五六七八九十", "tab\there"]


@pytest.fixture(scope="module", autouse=True)
def subword_cache(tmp_path_factory):
  """Trains the subword model once per module into a temporary cache."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("NOEMBED_CACHE", str(tmp_path_factory.mktemp("noembed_cache")))
    yield


SMALL = {"max_length": 64, "max_tokens": 16, "max_slices": 16,
         "num_heads": 4, "mlp_dim": 64, "num_buckets": 512}


def _small(name):
  """The method's defaults with short lengths, so 8 texts encode fast."""
  config = inputs.get(name).default_config()
  for key, value in SMALL.items():
    if key in config:
      config[key] = value
  return config


def test_all_six_methods_are_registered():
  assert set(METHODS) <= set(inputs.names())
  with pytest.raises(KeyError, match="'wordpiece'"):
    inputs.get("wordpiece")


@pytest.mark.parametrize("name", METHODS)
def test_front_end_feeds_embedder_under_jit(name):
  method = inputs.get(name)
  config = _small(name)
  batch = method.encode(TEXTS, config, None)
  assert all(value.shape[0] == len(TEXTS) for value in batch.values())
  assert batch["mask"].dtype == bool
  embedder = method.build_embedder(config, d_model=32, dtype=jnp.float32,
                                   param_dtype=jnp.float32)
  variables = embedder.init(jax.random.PRNGKey(0), batch, deterministic=True)
  embedded = jax.jit(lambda v, b: embedder.apply(v, b, deterministic=True))(variables, batch)
  assert isinstance(embedded, Embedded)
  assert embedded.x.shape[:2] == embedded.mask.shape and embedded.x.shape[2] == 32
  assert bool(jnp.isfinite(embedded.x).all())
  # Empty text: at most the specials are real; a full text has real positions.
  assert embedded.mask[0].any()


@pytest.mark.parametrize("name", METHODS)
def test_masked_units_contract(name):
  method = inputs.get(name)
  config = _small(name)
  units = method.masked_units(config)
  batch = {key: jnp.asarray(value) for key, value in method.encode(TEXTS, config, None).items()}
  maskable = units.maskable(batch)
  assert maskable.shape == batch["mask"].shape
  assert not bool((maskable & ~batch["mask"]).any())  # never mask padding
  targets = units.targets(batch)
  assert targets.shape == batch["mask"].shape + (units.num_heads,)
  assert int(targets.min()) >= 0 and int(targets.max()) < units.vocab_size
  corrupted = units.corrupt(batch, maskable)
  changed = np.asarray(corrupted[units.key] != batch[units.key]).reshape(
      maskable.shape + (-1,)).any(-1)
  assert not (changed & ~np.asarray(maskable)).any()  # only masked units change
  assert changed.any()


@pytest.mark.parametrize("name", METHODS)
def test_dry_run_builds_quickstart_with_every_embedder(name):
  config = quickstart.get_config("size=tiny")
  config.embedder.name = name
  for key, value in SMALL.items():
    if key in config.embedder[name]:
      config.embedder[name][key] = value
  table = dry_run.parameter_table(config)
  total = int(table.splitlines()[-1].split(": ")[1])
  embedder_row = next(line for line in table.splitlines() if line.startswith("embedder"))
  assert total > int(embedder_row.split()[-2].replace(",", "")) > 0


@pytest.mark.parametrize("name", METHODS)
def test_runs_sharded_on_data4_model2(name):
  assert jax.device_count() == 8
  method = inputs.get(name)
  config = _small(name)
  texts = TEXTS * 1  # 8 texts: 2 per data shard
  batch = method.encode(texts, config, None)
  embedder = method.build_embedder(config, d_model=32, dtype=jnp.float32,
                                   param_dtype=jnp.float32)
  base = quickstart.get_config("size=tiny")
  base.mesh.update({"data": 4, "fsdp": 1, "model": 2})
  mesh = mesh_lib.make_mesh(base.mesh)
  rules = mesh_lib.rules(base)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    global_batch = mesh_lib.global_batch(batch, mesh_lib.batch_sharding(mesh))
    init = lambda key: embedder.init(key, global_batch, deterministic=True)
    boxed = jax.eval_shape(init, jax.random.PRNGKey(0))
    shardings = mesh_lib.state_shardings(boxed, mesh, rules)
    variables = jax.jit(lambda key: nn.unbox(init(key)), out_shardings=shardings)(
        jax.random.PRNGKey(0))
    embedded = jax.jit(lambda v, b: embedder.apply(v, b, deterministic=True))(
        variables, global_batch)
  specs = [sharding.spec for sharding in jax.tree_util.tree_leaves(
      shardings, is_leaf=lambda x: isinstance(x, NamedSharding))]
  # Every parameter got its sharding from the rules; at least one is split over `model` or
  # `fsdp` where the method has a table or projection wide enough.
  assert specs
  leaves = jax.tree_util.tree_leaves(variables)
  assert all(isinstance(leaf.sharding, NamedSharding) for leaf in leaves)
  reference = embedder.apply(jax.device_get(variables), batch, deterministic=True)
  np.testing.assert_allclose(np.asarray(embedded.x), np.asarray(reference.x), atol=1e-5)
  np.testing.assert_array_equal(np.asarray(embedded.mask), np.asarray(reference.mask))
