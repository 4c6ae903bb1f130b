"""ByT5 span corruption: golden example, exact reconstruction, T5's counts and its uniform span
distribution, lengths against T5's random_spans_helper, determinism across processes, and an
end-to-end run on a (data=4, model=2) mesh whose loss goes down."""

import collections
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import byt5_span
from noembed import tasks
from noembed.tasks import span_corruption
from noembed.text import bytes as byte_text
from tests.run_metrics import read_metrics, train_on_data_model_mesh

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "All human beings are born free and equal in dignity and rights.",
    "Všichni lidé rodí se svobodní a sobě rovní co do důstojnosti a práv.",
    "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心。",
    "",
    "x",
    "ab",
    "Кожен має право на освіту. 🏳️‍🌈 Emoji ZWJ sequences too.",
]


def _task(**task):
  config = byt5_span.get_config("size=tiny")
  config.task.update(task)
  return tasks.build(config)


def _ids(text: str) -> list[int]:
  return [byte + byte_text.OFFSET for byte in byte_text.to_utf8(text)]


def _reconstruct(inputs, targets, target_is_byte) -> list[int]:
  """The text's byte ids: the k-th input sentinel (258 - k) replaced by the bytes that follow
  the k-th sentinel in the targets."""
  spans = []
  for token, is_byte in zip(targets.tolist(), target_is_byte.tolist()):
    if token == byte_text.EOS_ID:
      break
    if is_byte:
      spans[-1].append(token)
    else:
      assert token == byte_text.sentinel(len(spans))
      spans.append([])
  out, used = [], 0
  for token in inputs.tolist():
    if token == byte_text.EOS_ID:
      break
    if used < len(spans) and token == byte_text.sentinel(used):
      out.extend(spans[used])
      used += 1
    else:
      out.append(token)
  # A 1-byte text has no noise (T5 computes its mask at length 2 and cuts it), but its targets
  # still open with the sentinel of the non-noise span.
  assert all(not span for span in spans[used:]) and len(spans) - used <= 1
  return out


def test_golden_example():
  task = _task()
  batch = task.batch_fn([{"text": TEXTS[0]}])
  inputs = batch["ids"][0][batch["mask"][0]].tolist()
  targets = batch["targets"][0][batch["targets_mask"][0]].tolist()
  # 64 bytes: round(9.6) = 10 noise bytes in max(round(0.5), 1) = 1 span, which ends the text.
  assert inputs == _ids("All human beings are born free and equal in dignity an") + [258, 1]
  assert targets == [258] + _ids("d rights.") + [1]
  np.testing.assert_array_equal(batch["target_is_byte"][0][:11], [0] + [1] * 9 + [0])
  assert batch["ids"].shape == (1, 64) and batch["targets"].shape == (1, 13)


def test_inputs_and_targets_reconstruct_every_text_exactly():
  task = tasks.build(byt5_span.get_config(""))  # 298-byte packs
  texts = TEXTS + [" ".join(TEXTS) * 3]
  for seed in range(3):
    task.config.seed = seed
    batch = task.batch_fn([{"text": text} for text in texts])
    assert batch["host_truncated_texts"] == 1
    assert (batch["targets"][-1] == byte_text.sentinel(1)).any()  # the long text has 2 spans
    for row, text in enumerate(texts):
      if len(byte_text.to_utf8(text)) > task.pack_bytes:
        text = byte_text.decode(byte_text.encode([text], task.pack_bytes, add_eos=False)[0])[0]
      original = _ids(text)
      assert _reconstruct(batch["ids"][row], batch["targets"][row],
                          batch["target_is_byte"][row]) == original, text
      inputs_length, targets_length = span_corruption.span_corruption_lengths(
          len(original), 0.15, 20.0)
      assert batch["mask"][row].sum() == inputs_length
      assert batch["targets_mask"][row].sum() == targets_length
      num_noise = (span_corruption.noise_counts(len(original), 0.15, 20.0)[0]
                   if len(original) >= 2 else 0)
      assert batch["target_is_byte"][row].sum() == num_noise


def test_counts_and_shape_of_the_mask_follow_t5():
  for length in range(0, 400):
    rng = np.random.default_rng(length)
    mask = span_corruption.random_spans_noise_mask(length, 0.15, 20.0, rng)
    assert mask.shape == (length,) and mask.dtype == bool
    if length < 2:
      assert not mask.any()
      continue
    num_noise = min(max(int(np.round(np.float32(length) * np.float32(0.15))), 1), length - 1)
    num_spans = max(int(np.round(np.float32(num_noise) / np.float32(20.0))), 1)
    assert mask.sum() == num_noise, length
    starts = np.flatnonzero(mask & ~np.concatenate([[False], mask[:-1]]))
    assert len(starts) == num_spans, length
    assert not mask[0] and mask[-1]  # non-noise first, noise last, as T5
  # 8 noise bytes in 8 spans need 8 non-noise spans; T5 fails here too (segment shapes).
  with pytest.raises(ValueError, match="cannot split 2 tokens into 8 non-empty spans"):
    span_corruption.random_spans_noise_mask(10, 0.8, 1.0, np.random.default_rng(0))


def test_all_masks_with_the_counts_are_equally_likely():
  """Length 10, density 0.4, mean span 2: 4 noise bytes in 2 spans, 6 others in 2 spans; the
  3 * 5 = 15 masks T5 allows each come with probability 1/15."""
  draws = 3000
  counts = collections.Counter(
      span_corruption.random_spans_noise_mask(10, 0.4, 2.0, np.random.default_rng(seed))
      .tobytes() for seed in range(draws))
  allowed = set()
  for first, second in itertools.product(range(1, 4), range(1, 6)):
    noise = [first, 4 - first]
    other = [second, 6 - second]
    mask = [False] * other[0] + [True] * noise[0] + [False] * other[1] + [True] * noise[1]
    allowed.add(np.array(mask).tobytes())
  assert set(counts) == allowed
  expected = draws / 15
  for count in counts.values():
    assert abs(count - expected) < 5 * math.sqrt(expected), counts


def test_noise_density_over_many_lengths_is_close_to_0_15():
  task = _task()
  config = byt5_span.get_config("")
  small = tasks.build(config)
  for current in (task, small):
    texts = [(TEXTS[0] + " " + TEXTS[1]) * 5]
    batch = current.batch_fn([{"text": text[:n]} for text in texts
                              for n in range(40, current.pack_bytes, 7)])
    num_bytes = np.minimum(batch["num_bytes"], current.pack_bytes)
    assert abs(batch["target_is_byte"].sum() / num_bytes.sum() - 0.15) < 0.01


def test_lengths_agree_with_t5_random_spans_helper():
  """T5's helper (ported literally below) and ByT5's published 1024 -> 189 targets."""

  def t5_helper(inputs_length, noise_density, mean_noise_span_length):
    def lengths(tokens_length):
      num_noise_tokens = int(round(tokens_length * noise_density))
      num_nonnoise_tokens = tokens_length - num_noise_tokens
      num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
      return (num_nonnoise_tokens + num_noise_spans + 1,
              num_noise_tokens + num_noise_spans + 1)
    tokens_length = inputs_length - 1
    while lengths(tokens_length + 1)[0] <= inputs_length:
      tokens_length += 1
    return tokens_length, lengths(tokens_length)[1]

  for inputs_length in (64, 128, 256, 512, 1024, 2048):
    num_bytes = span_corruption.max_text_bytes(inputs_length, 0.15, 20.0)
    _, targets_length = span_corruption.span_corruption_lengths(num_bytes, 0.15, 20.0)
    assert (num_bytes, targets_length) == t5_helper(inputs_length, 0.15, 20.0)
  assert span_corruption.span_corruption_lengths(1193, 0.15, 20.0) == (1024, 189)


def test_every_text_up_to_pack_bytes_fits_without_trimming():
  task = _task()
  texts = ["é" * (n // 2) + "a" * (n % 2) for n in range(task.pack_bytes + 1)]
  batch = task.batch_fn([{"text": text} for text in texts])
  for row, text in enumerate(texts):
    assert _reconstruct(batch["ids"][row], batch["targets"][row],
                        batch["target_is_byte"][row]) == _ids(text)
  with pytest.raises(ValueError, match="pack_bytes=74 corrupts to 65 input ids"):
    _task(pack_bytes=74)
  with pytest.raises(ValueError, match="targets_length=12 is shorter than the 13"):
    _task(targets_length=12)


def test_corruption_depends_on_text_and_seed_only():
  task = tasks.build(byt5_span.get_config(""))  # 298-byte packs: 2 spans, placed at random
  text = " ".join(TEXTS) * 2
  alone = task.batch_fn([{"text": text}])
  among = task.batch_fn([{"text": TEXTS[0]}, {"text": text}])
  for key in ("ids", "targets", "target_is_byte"):
    np.testing.assert_array_equal(alone[key][0], among[key][1])
  task.config.seed = 1
  reseeded = task.batch_fn([{"text": text}])
  assert not np.array_equal(alone["ids"], reseeded["ids"])


def test_corruption_is_the_same_in_another_process():
  task = _task()
  here = task.batch_fn([{"text": text} for text in TEXTS])
  script = ("import json, sys; from configs import byt5_span; from noembed import tasks; "
            "texts = json.loads(sys.argv[1]); "
            "b = tasks.build(byt5_span.get_config('size=tiny')).batch_fn("
            "[{'text': t} for t in texts]); "
            "print(json.dumps({k: b[k].tolist() for k in ('ids', 'targets')}))")
  env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO),
         "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-c", script, json.dumps(TEXTS)], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)
  there = json.loads(result.stdout.strip().splitlines()[-1])
  np.testing.assert_array_equal(here["ids"], there["ids"])
  np.testing.assert_array_equal(here["targets"], there["targets"])


def test_non_byte_embedders_are_rejected_by_name():
  config = byt5_span.get_config("size=tiny")
  config.embedder.name = "canine_hash"
  with pytest.raises(ValueError, match="embedder 'canine_hash'.*byte, gbst"):
    tasks.build(config)


def test_tiny_run_on_a_data_model_mesh_lowers_the_loss(data_dir, tmp_path):
  start, end = train_on_data_model_mesh(byt5_span.get_config("size=tiny"), data_dir, tmp_path)
  assert end["loss"] < start["loss"] - 0.5, (start, end)
  assert end["bits_per_byte"] < start["bits_per_byte"]
  assert 0.0 <= end["accuracy"] <= 1.0
  records = read_metrics(tmp_path)
  assert records[20]["loss"] < records[5]["loss"]
  assert records[20]["truncated_texts"] == 0
