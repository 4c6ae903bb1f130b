"""Seq2seq denoising: noised sources through any input method, clean ByT5 targets with counted
truncation, metrics against numpy, and an end-to-end run on a (data=4, model=2) mesh whose loss
goes down and whose eval reports greedy-decoding metrics."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs import denoise
from noembed import inputs, tasks
from noembed.tasks import seq2seq
from noembed.text import bytes as byte_text
from noembed.text import noise as noise_lib
from noembed.text.common import TruncationStats
from tests.run_metrics import read_metrics, train_on_data_model_mesh

TEXTS = [
    "All human beings are born free and equal in dignity and rights.",
    "人人生而自由，在尊严和权利上一律平等。",
    "",
    "Short.",
]


def _config(embedder="byte", **task):
  config = denoise.get_config("size=tiny")
  config.embedder.name = embedder
  config.task.update(task)
  return config


def test_example_seed_is_a_fixed_function_of_text_and_seed():
  # The first 8 bytes (little-endian) of sha256(b"seq2seq_noise\0" b"0\0" b"abc"): fixed
  # across processes and Python hash seeds.
  assert seq2seq.example_seed("abc", 0, "seq2seq_noise") == 16257346206828292335
  assert seq2seq.example_seed("abc", 1, "seq2seq_noise") != seq2seq.example_seed(
      "abc", 0, "seq2seq_noise")
  assert seq2seq.example_seed("\ud800", 0, "x") == seq2seq.example_seed("\ud800", 0, "x")


@pytest.mark.parametrize("embedder", ["byte", "canine_hash", "projection", "subword"])
def test_sources_are_noised_texts_through_the_input_method(embedder):
  config = _config(embedder, noise="swap", noise_rate=0.5)
  task = tasks.build(config)
  batch = task.batch_fn([{"text": text} for text in TEXTS])
  sources = [noise_lib.swap([text], 0.5, seq2seq.example_seed(text, 0, "seq2seq_noise"))[0]
             for text in TEXTS]
  assert sources[0] != TEXTS[0]
  method, method_config = inputs.selected(config.embedder)
  expected = method.encode(sources, method_config, TruncationStats())
  for key, value in expected.items():
    np.testing.assert_array_equal(batch[key], value, err_msg=key)
  np.testing.assert_array_equal(batch["num_bytes"], byte_text.num_bytes(sources))


def test_targets_are_clean_bytes_with_eos_and_truncation_is_counted():
  task = tasks.build(_config(targets_length=16))
  batch = task.batch_fn([{"text": text} for text in TEXTS])
  ids, mask = byte_text.encode(TEXTS, 16, add_eos=True)
  np.testing.assert_array_equal(batch["targets"], ids)
  np.testing.assert_array_equal(batch["targets_mask"], mask)
  np.testing.assert_array_equal(batch["target_is_byte"], mask & (ids >= byte_text.OFFSET))
  assert byte_text.decode(batch["targets"])[3] == "Short."
  # Text 0 keeps 15 of 63 bytes; text 1 keeps 5 whole 3-byte characters of 57 bytes.
  assert batch["host_truncated_targets"] == 2
  assert batch["host_dropped_target_bytes"] == (63 - 15) + (57 - 15)
  assert batch["host_truncated_texts"] >= 1  # the 32-byte source of text 0 is cut as well


def test_same_text_same_source_wherever_it_is_in_the_batch():
  task = tasks.build(_config(noise="drop", noise_rate=0.3))
  alone = task.batch_fn([{"text": TEXTS[0]}])
  among = task.batch_fn([{"text": TEXTS[3]}, {"text": TEXTS[0]}])
  np.testing.assert_array_equal(alone["ids"][0], among["ids"][1])
  task.config.seed = 1
  assert not np.array_equal(task.batch_fn([{"text": TEXTS[0]}])["ids"], alone["ids"])


def test_bad_task_settings_name_the_key():
  with pytest.raises(ValueError, match="config.task.noise must be one of .*got 'typo'"):
    tasks.build(_config(noise="typo"))
  with pytest.raises(ValueError, match="targets_length must be at least 2"):
    tasks.build(_config(targets_length=1))


def _metric_batch():
  rng = np.random.default_rng(0)
  targets = np.array([[10, 11, 1, 0], [12, 1, 0, 0], [13, 14, 15, 1]], np.int32)
  return rng, {
      "targets": targets,
      "targets_mask": targets != 0,
      "target_is_byte": targets >= 3,
      "example_valid": np.array([True, True, False]),
  }


def test_teacher_forced_metrics_match_numpy():
  rng, batch = _metric_batch()
  logits = rng.normal(size=(3, 4, 259)).astype(np.float32)
  logits[0, 0, 10] = 50.0  # one certain, correct byte
  loss, metrics = seq2seq.teacher_forced_metrics(jnp.asarray(logits), batch)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_probs, batch["targets"][..., None], -1)[..., 0]
  tokens = batch["targets_mask"] & batch["example_valid"][:, None]
  text_bytes = batch["target_is_byte"] & batch["example_valid"][:, None]
  correct = logits.argmax(-1) == batch["targets"]
  np.testing.assert_allclose(float(loss), nll[tokens].mean(), rtol=1e-5)
  value = lambda name: float(metrics[name][0]) / float(metrics[name][1])
  np.testing.assert_allclose(value("loss"), nll[tokens].mean(), rtol=1e-5)
  np.testing.assert_allclose(value("bits_per_byte"), nll[text_bytes].sum() / np.log(2) / 3,
                             rtol=1e-5)
  assert float(metrics["bits_per_byte"][1]) == 3  # eos and the invalid example are not bytes
  np.testing.assert_allclose(value("accuracy"), correct[text_bytes].mean())
  assert value("accuracy") >= 1 / 3


def test_greedy_metrics_match_numpy():
  _, batch = _metric_batch()
  greedy = np.array([[10, 11, 1, 0], [12, 7, 1, 0], [13, 14, 15, 1]], np.int32)
  metrics = seq2seq.greedy_metrics(jnp.asarray(greedy), batch)
  assert float(metrics["exact_match"][0]) == 1 and float(metrics["exact_match"][1]) == 2
  assert float(metrics["greedy_byte_accuracy"][0]) == 3
  assert float(metrics["greedy_byte_accuracy"][1]) == 3
  greedy[0, 3] = 5  # a byte after eos: not an exact match any more
  metrics = seq2seq.greedy_metrics(jnp.asarray(greedy), batch)
  assert float(metrics["exact_match"][0]) == 0


def test_tiny_run_on_a_data_model_mesh_lowers_the_loss(data_dir, tmp_path):
  start, end = train_on_data_model_mesh(denoise.get_config("size=tiny"), data_dir, tmp_path)
  assert end["loss"] < start["loss"] - 0.5, (start, end)
  assert end["bits_per_byte"] < start["bits_per_byte"]
  for record in (start, end):
    for key in ("exact_match", "greedy_byte_accuracy", "accuracy"):
      assert 0.0 <= record[key] <= 1.0, key
    assert record["truncated_targets"] > 0  # UDHR paragraphs exceed the tiny 32 bytes
  records = read_metrics(tmp_path)
  assert records[20]["loss"] < records[5]["loss"]
