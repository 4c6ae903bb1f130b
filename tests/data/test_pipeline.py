"""grain pipelines: sharding, shuffling, padding, packing and exact resume from JSON state."""

import collections
import json

import numpy as np
import pytest

from noembed.data import pipeline, tfds_udhr, udhr


def _source(size):
  """Records as tfds decodes them: bytes for text, plus an integer field."""
  return [{"text": f"text {index:03d}".encode(), "id": np.int64(index)} for index in range(size)]


def _ids_batch(elements):
  return {"id": np.array([element["id"] for element in elements], dtype=np.int64),
          "text": np.array([element["text"] for element in elements])}


def _texts_batch(elements):
  return {"text": np.array([element["text"] for element in elements], dtype=object)}


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _assert_batches_equal(left, right):
  assert len(left) == len(right)
  for left_batch, right_batch in zip(left, right):
    assert left_batch.keys() == right_batch.keys()
    for key in left_batch:
      np.testing.assert_array_equal(left_batch[key], right_batch[key], err_msg=key)


def _valid_ids(batches):
  return [int(i) for batch in batches for i in batch["id"][batch["example_valid"]]]


@pytest.mark.parametrize("shuffle", [False, True])
def test_process_shards_cover_every_example_once(shuffle):
  source = _source(23)
  per_process = []
  for process_index in range(2):
    batches = list(pipeline.make_iterator(
        source, batch_fn=_ids_batch, batch_size=5, seed=7, shuffle=shuffle, repeat=False,
        process_index=process_index, process_count=2))
    assert len(batches) == 3  # ceil(ceil(23 / 2) / 5) on both processes
    per_process.append(_valid_ids(batches))
  assert per_process[0] and per_process[1]
  assert sorted(per_process[0] + per_process[1]) == list(range(23))
  if not shuffle:
    assert per_process == [list(range(0, 23, 2)), list(range(1, 23, 2))]  # strided shards


def test_repeat_covers_every_example_once_per_epoch_and_reshuffles():
  source = _source(23)
  epochs = []
  for process_index in range(2):
    iterator = pipeline.make_iterator(
        source, batch_fn=_ids_batch, batch_size=4, seed=7, shuffle=True, repeat=True,
        process_index=process_index, process_count=2)
    shard_size = len(range(process_index, 23, 2))
    batches = _take(iterator, shard_size * 3 // 4 + 1)
    assert all(batch["example_valid"].all() for batch in batches)
    ids = _valid_ids(batches)
    epochs.append([ids[e * shard_size:(e + 1) * shard_size] for e in range(3)])
  for epoch in range(3):
    assert sorted(epochs[0][epoch] + epochs[1][epoch]) == list(range(23))
  assert epochs[0][0] != epochs[0][1] != epochs[0][2]  # each epoch shuffled anew


def test_padding_marks_invalid_examples_and_keeps_the_keys():
  calls = []
  def batch_fn(elements):
    calls.append([dict(element) for element in elements])
    return _ids_batch(elements)
  batches = list(pipeline.make_iterator(
      _source(7), batch_fn=batch_fn, batch_size=3, seed=0, shuffle=False, repeat=False))
  assert len(calls) == len(batches) == 3
  np.testing.assert_array_equal(batches[-1]["example_valid"], [True, False, False])
  assert calls[-1][1] == {"text": "", "id": 0} and isinstance(calls[0][0]["text"], str)
  assert _valid_ids(batches) == list(range(7))


def test_same_seed_same_batches_other_seed_other_order():
  def run(seed):
    return _take(pipeline.make_iterator(_source(50), batch_fn=_ids_batch, batch_size=8,
                                        seed=seed, shuffle=True, repeat=True), 10)
  _assert_batches_equal(run(3), run(3))
  assert _valid_ids(run(3)) != _valid_ids(run(4))


def _resume_check(source, stop, total, **kwargs):
  expected = _take(pipeline.make_iterator(source, **kwargs), total)
  iterator = pipeline.make_iterator(source, **kwargs)
  head = _take(iterator, stop)
  state = json.loads(json.dumps(iterator.get_state()))
  resumed = pipeline.make_iterator(source, **kwargs)
  resumed.set_state(state)
  _assert_batches_equal(head + _take(resumed, total - stop), expected)


@pytest.mark.parametrize("stop", [3, 7])
def test_resume_with_packing_is_exact(stop):
  # 30 texts of 8 bytes, packs of <= 20 bytes hold two (17 bytes), 4 packs a batch: an epoch is
  # 15 packs, so stop=3 (12 packs) is mid-epoch and stop=7 (28 packs) is past the boundary.
  kwargs = dict(batch_fn=_texts_batch, batch_size=4, seed=11, shuffle=True, repeat=True,
                pack_bytes=20)
  _resume_check(_source(30), stop, 12, **kwargs)


def test_resume_with_a_pack_straddling_the_epoch_boundary():
  # 11 texts: the 6th pack joins the last text of epoch 1 with the first of epoch 2.
  kwargs = dict(batch_fn=_texts_batch, batch_size=3, seed=5, shuffle=True, repeat=True,
                pack_bytes=20)
  packs = [text for batch in _take(pipeline.make_iterator(_source(11), **kwargs), 2)
           for text in batch["text"]]
  epoch_1 = {f"text {index:03d}" for index in range(11)}
  assert set("\n".join(packs[:5]).split("\n")) | {packs[5].split("\n")[0]} == epoch_1
  for stop in (1, 2, 3):
    _resume_check(_source(11), stop, 8, **kwargs)


@pytest.mark.parametrize("repeat", [False, True])
def test_resume_without_packing_is_exact(repeat):
  kwargs = dict(batch_fn=_ids_batch, batch_size=4, seed=2, shuffle=True, repeat=repeat,
                process_index=1, process_count=3)
  _resume_check(_source(40), 2, 4, **kwargs)


def test_packing_output_and_padding():
  source = [{"text": text.encode()} for text in ("aaaa", "bb", "cccccccccc", "d")]
  batches = list(pipeline.make_iterator(source, batch_fn=_texts_batch, batch_size=2, seed=0,
                                        shuffle=False, repeat=False, pack_bytes=8))
  texts = [text for batch in batches for text in batch["text"]]
  assert texts == ["aaaa\nbb", "cccccccc", "cc\nd", ""]
  np.testing.assert_array_equal(batches[-1]["example_valid"], [True, False])


def test_tfds_source_pretraining_packs_the_validation_texts(udhr_data_dir):
  source = tfds_udhr.data_source("validation", udhr_data_dir)
  batches = list(pipeline.make_iterator(source, batch_fn=_texts_batch, batch_size=16, seed=1,
                                        shuffle=True, repeat=False, pack_bytes=512))
  packs = [text for batch in batches for text, valid in zip(batch["text"],
                                                              batch["example_valid"]) if valid]
  assert all(len(text.encode()) <= 512 for text in packs)
  assert collections.Counter("".join(packs).replace("\n", "")) == collections.Counter(
      "".join(udhr.load_texts("validation")).replace("\n", ""))


def test_tfds_source_classification_batches(udhr_data_dir):
  source = tfds_udhr.data_source("test", udhr_data_dir)
  names = udhr.label_names("script")
  def batch_fn(elements):
    return {"label": np.array([names.index(e["script"]) if e["script"] else -1
                               for e in elements])}
  batches = list(pipeline.make_iterator(source, batch_fn=batch_fn, batch_size=32, seed=0,
                                        shuffle=False, repeat=False))
  labels = [int(label) for batch in batches for label in batch["label"][batch["example_valid"]]]
  assert labels == [names.index(example["script"]) for example in udhr.load_examples("test")]


@pytest.mark.parametrize("bad, match", [
    (dict(batch_size=0), "batch_size"), (dict(seed=-1), "seed"), (dict(seed=2**32), "seed"),
    (dict(process_index=2, process_count=2), "process_index"),
    (dict(process_count=9), "process_count"), (dict(pack_bytes=2), "pack_bytes"),
    (dict(num_workers=-1), "num_workers")])
def test_bad_arguments_raise_naming_them(bad, match):
  kwargs = dict(batch_fn=_ids_batch, batch_size=2, seed=0, shuffle=True, repeat=False)
  with pytest.raises(ValueError, match=match):
    pipeline.make_iterator(_source(8), **{**kwargs, **bad})


def test_batch_fn_may_not_return_example_valid():
  with pytest.raises(ValueError, match="example_valid"):
    next(pipeline.make_iterator(_source(4), batch_fn=lambda e: {"example_valid": 1},
                                batch_size=2, seed=0, shuffle=False, repeat=False))


@pytest.mark.slow
def test_workers_match_a_single_process_without_packing():
  kwargs = dict(batch_fn=_ids_batch, batch_size=4, seed=3, shuffle=True, repeat=True)
  expected = _take(pipeline.make_iterator(_source(30), **kwargs), 12)
  iterator = pipeline.make_iterator(_source(30), num_workers=2, **kwargs)
  _assert_batches_equal(_take(iterator, 12), expected)
  iterator.close()


@pytest.mark.slow
def test_workers_with_packing_resume_exactly():
  kwargs = dict(batch_fn=_texts_batch, batch_size=3, seed=3, shuffle=True, repeat=True,
                pack_bytes=20, num_workers=2)
  _resume_check(_source(30), 4, 10, **kwargs)
