"""The encoder-decoder model: greedy decoding against a step-by-step argmax loop over its own
teacher-forced logits, causality and shift-right, padding invariance, params and build errors."""

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


@pytest.fixture(scope="module")
def model_and_variables():
  model = _model()
  variables = model.init(jax.random.PRNGKey(0), _batch(), deterministic=True)
  return model, variables


def _reference_greedy(model, variables, batch, max_length):
  """Python loop: each step runs the teacher-forced model on the prefix and takes the argmax."""
  batch_size = batch["ids"].shape[0]
  tokens = np.zeros((batch_size, max_length), np.int32)
  done = np.zeros(batch_size, bool)
  for step in range(max_length):
    prefix = {**batch, "targets": tokens, "targets_mask": np.ones_like(tokens, bool)}
    logits = np.asarray(model.apply(variables, prefix, deterministic=True))
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
  model, variables = model_and_variables
  batch, max_length = _batch(), 6
  plain = _reference_greedy(model, variables, batch, max_length)
  # Make eos the argmax wherever row 0 predicted its third byte, so decoding stops early there.
  variables = _swap_logit_columns(variables, int(plain[0, 2]), byte_text.EOS_ID)
  expected = _reference_greedy(model, variables, batch, max_length)
  assert (expected == byte_text.EOS_ID).any(1).sum() >= 1
  eos_rows = np.flatnonzero((expected == byte_text.EOS_ID).any(1))
  for row in eos_rows:
    first_eos = np.flatnonzero(expected[row] == byte_text.EOS_ID)[0]
    assert (expected[row, first_eos + 1:] == byte_text.PAD_ID).all()
  decode = jax.jit(lambda v, b: model.apply(v, b, max_length, method=model.greedy_decode))
  greedy = np.asarray(decode(variables, batch))
  np.testing.assert_array_equal(greedy, expected)
  assert greedy.dtype == np.int32 and greedy.shape == (3, max_length)


def test_greedy_decode_stops_when_every_row_is_done(model_and_variables):
  model, variables = model_and_variables
  batch = _batch()
  # eos in every column position of the logits: all rows end at step 0, the rest is pad.
  params = nn.unbox(variables["params"])
  kernel = np.zeros_like(np.asarray(params["logits_dense"]["kernel"]))
  kernel[:, byte_text.EOS_ID] = 1.0
  params = {**params, "logits_dense": {"kernel": jnp.asarray(kernel)}}
  state = _final_norm_positive(params)
  tokens = np.asarray(model.apply({"params": state}, batch, 5, method=model.greedy_decode))
  np.testing.assert_array_equal(tokens[:, 0], byte_text.EOS_ID)
  np.testing.assert_array_equal(tokens[:, 1:], byte_text.PAD_ID)


def _final_norm_positive(params):
  """Params whose decoder output is a positive multiple of all-ones, so eos wins everywhere."""
  params = dict(params)
  decoder = dict(params["decoder"])
  scale = decoder["final_norm"]["scale"]
  decoder["final_norm"] = {"scale": jnp.zeros_like(scale)}
  params["decoder"] = decoder
  kernel = params["logits_dense"]["kernel"]
  # With a zero norm scale every logit is 0; a bias-free way to make eos win is a tie-break:
  # argmax returns the first maximum, and eos (1) comes after pad (0), so make pad lose.
  kernel = kernel.at[:, byte_text.PAD_ID].set(0.0)
  params["logits_dense"] = {"kernel": kernel}
  return params
