"""The encoder-decoder model: greedy decoding against a step-by-step argmax loop over its own
teacher-forced logits, causality and shift-right, padding invariance, params and build errors."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import byt5_span
from noembed import models
from noembed.models import encoder_decoder
from noembed.models.heads import HeadSpec
from noembed.nn.embedders.table import TableEmbedder
from noembed.text import bytes as byte_text

ALLOWED_NAMES = {"batch", "length", "embed", "mlp", "heads", "kv", "vocab", "buckets",
                 "features", "layers", None}
TARGETS_HEAD = HeadSpec("targets", vocab_size=byte_text.VOCAB_SIZE)


def _model(dtype=jnp.float32, **fields):
  defaults = dict(num_encoder_layers=1, num_decoder_layers=2, d_model=32, num_heads=2,
                  mlp_dim=64, dropout_rate=0.0)
  defaults.update(fields)
  return encoder_decoder.EncoderDecoderModel(
      embedder=TableEmbedder(num_rows=384, d_model=defaults["d_model"], dtype=dtype),
      dtype=dtype, **defaults)


def _batch(seed=0, batch_size=3, input_length=12, target_length=7):
  rng = np.random.default_rng(seed)
  lengths = np.array([input_length, input_length - 4, 3])[:batch_size]
  ids = rng.integers(3, 259, (batch_size, input_length)).astype(np.int32)
  mask = np.arange(input_length)[None] < lengths[:, None]
  targets = rng.integers(3, 259, (batch_size, target_length)).astype(np.int32)
  target_lengths = np.array([target_length, 4, 2])[:batch_size]
  targets_mask = np.arange(target_length)[None] < target_lengths[:, None]
  return {"ids": np.where(mask, ids, 0), "mask": mask,
          "targets": np.where(targets_mask, targets, 0), "targets_mask": targets_mask}


def _init(model, batch):
  return jax.jit(functools.partial(model.init, deterministic=True))(jax.random.PRNGKey(0), batch)


@pytest.fixture(scope="module")
def model_and_variables():
  """The model, its variables, and its jitted teacher-forced apply (variables, batch)."""
  model = _model()
  return model, _init(model, _batch()), jax.jit(functools.partial(model.apply,
                                                                  deterministic=True))


def _reference_greedy(apply, variables, batch, max_length):
  """Python loop: each step runs the teacher-forced model on the prefix and takes the argmax."""
  batch_size = batch["ids"].shape[0]
  tokens = np.zeros((batch_size, max_length), np.int32)
  done = np.zeros(batch_size, bool)
  for step in range(max_length):
    prefix = {**batch, "targets": tokens, "targets_mask": np.ones_like(tokens, bool)}
    logits = np.asarray(apply(variables, prefix))
    next_tokens = np.where(done, byte_text.PAD_ID, logits[:, step].argmax(-1))
    tokens[:, step] = next_tokens
    done |= next_tokens == byte_text.EOS_ID
  return tokens


def _swap_logit_columns(variables, first, second):
  """Variables whose output projection has columns `first` and `second` exchanged."""
  params = jax.tree_util.tree_map(lambda x: x, nn.unbox(variables["params"]))
  kernel = np.array(params["logits_dense"]["kernel"])
  kernel[:, [first, second]] = kernel[:, [second, first]]
  params["logits_dense"]["kernel"] = jnp.asarray(kernel)
  return {"params": params}


def test_greedy_decode_equals_a_step_by_step_argmax_loop(model_and_variables):
  model, variables, apply = model_and_variables
  batch, max_length = _batch(), 6
  plain = _reference_greedy(apply, variables, batch, max_length)
  # Make eos the argmax wherever row 0 predicted its third byte, so decoding stops early there.
  variables = _swap_logit_columns(variables, int(plain[0, 2]), byte_text.EOS_ID)
  expected = _reference_greedy(apply, variables, batch, max_length)
  assert (expected[0, :3] == byte_text.EOS_ID).any()
  eos_rows = np.flatnonzero((expected == byte_text.EOS_ID).any(1))
  for row in eos_rows:
    first_eos = np.flatnonzero(expected[row] == byte_text.EOS_ID)[0]
    assert (expected[row, first_eos + 1:] == byte_text.PAD_ID).all()
  decode = jax.jit(lambda v, b: model.apply(v, b, max_length, method=model.greedy_decode))
  greedy = np.asarray(decode(variables, batch))
  np.testing.assert_array_equal(greedy, expected)
  assert greedy.dtype == np.int32 and greedy.shape == (3, max_length)


def test_logits_are_causal_in_the_targets_shifted_right(model_and_variables):
  _, variables, apply = model_and_variables
  batch = _batch()
  batch["targets_mask"] = np.ones_like(batch["targets_mask"])
  logits = np.asarray(apply(variables, batch))
  assert logits.shape == (3, 7, byte_text.VOCAB_SIZE) and logits.dtype == np.float32
  changed = dict(batch, targets=batch["targets"].copy())
  changed["targets"][:, 3] = (changed["targets"][:, 3] + 1 - 3) % 256 + 3
  changed_logits = np.asarray(apply(variables, changed))
  # Target t is the decoder input at t + 1: positions up to t cannot see it, later ones do.
  np.testing.assert_allclose(changed_logits[:, :4], logits[:, :4], rtol=0, atol=1e-6)
  assert np.abs(changed_logits[:, 4:] - logits[:, 4:]).max() > 1e-3
  last = dict(batch, targets=batch["targets"].copy())
  last["targets"][:, -1] = 5
  np.testing.assert_allclose(np.asarray(apply(variables, last)), logits, rtol=0, atol=1e-6)


def test_shift_right_starts_with_pad():
  targets = jnp.asarray([[7, 8, 1], [9, 1, 0]])
  np.testing.assert_array_equal(encoder_decoder.shift_right(targets), [[0, 7, 8], [0, 9, 1]])


def test_padding_never_changes_logits_at_real_positions(model_and_variables):
  """Padded targets (any ids under a False mask) and padded inputs leave real positions as they
  were; float32, atol 1e-5."""
  _, variables, apply = model_and_variables
  batch = _batch()
  logits = np.asarray(apply(variables, batch))
  rng = np.random.default_rng(1)
  padded = {
      "ids": np.pad(batch["ids"], ((0, 0), (0, 5))),
      "mask": np.pad(batch["mask"], ((0, 0), (0, 5))),
      "targets": np.pad(batch["targets"], ((0, 0), (0, 4))),
      "targets_mask": np.pad(batch["targets_mask"], ((0, 0), (0, 4))),
  }
  padded["ids"] = np.where(padded["mask"], padded["ids"], rng.integers(0, 259,
                                                                        padded["ids"].shape))
  padded["targets"] = np.where(padded["targets_mask"], padded["targets"],
                               rng.integers(0, 259, padded["targets"].shape))
  padded_logits = np.asarray(apply(variables, padded))
  real = batch["targets_mask"]
  np.testing.assert_allclose(padded_logits[:, :7][real], logits[real], rtol=0, atol=1e-5)


def test_params_carry_allowed_logical_names_and_bf16_compute_works():
  model = _model(dtype=jnp.bfloat16)
  variables = _init(model, _batch())
  boxes = jax.tree_util.tree_leaves(variables["params"],
                                    is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert boxes and all(isinstance(box, nn.Partitioned) for box in boxes)
  for box in boxes:
    assert set(box.names) <= ALLOWED_NAMES, box.names
    assert box.value.dtype == jnp.float32
  params = nn.unbox(variables["params"])
  assert params["target_embedding"]["embedding"].shape == (384, 32)
  assert params["logits_dense"]["kernel"].shape == (32, 384)
  logits = jax.jit(functools.partial(model.apply, deterministic=True))(variables, _batch())
  assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()


def _config(embedder="byte", **model):
  config = byt5_span.get_config("size=tiny")
  config.embedder.name = embedder
  config.model.update(model)
  return config


def test_a_downsampling_embedder_feeds_the_decoder():
  config = _config("gbst")
  model = models.build(config, TARGETS_HEAD)
  batch = _batch(input_length=16)
  variables = jax.eval_shape(functools.partial(model.init, deterministic=True),
                             jax.random.PRNGKey(0), batch)
  encoded, encoded_mask = jax.eval_shape(functools.partial(
      model.apply, deterministic=True, method=model.encode), variables, batch)
  assert encoded.shape == (3, 8, 32) and encoded_mask.shape == (3, 8)
  logits = jax.eval_shape(functools.partial(model.apply, deterministic=True), variables, batch)
  assert logits.shape == (3, 7, 259)


def test_build_rejects_other_heads_and_flavours_without_positions():
  with pytest.raises(ValueError, match="head kind 'targets'"):
    models.build(_config(), HeadSpec("units", vocab_size=259))
  model = models.build(_config(flavour="bert"), TARGETS_HEAD)
  with pytest.raises(ValueError, match="relative position bias.*'bert'"):
    model.init(jax.random.PRNGKey(0), _batch(), deterministic=True)
