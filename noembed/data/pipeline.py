"""grain input pipelines: example dicts from a random-access source -> batches from `batch_fn`.

Order of the stages:
1. shard by process: process p of P reads the strided shard p, p + P, p + 2P, ... of the source
   (shard sizes differ by at most one);
2. normalise each record: bytes values (tfds Text features) become str;
3. seeded shuffle of the shard (grain's index shuffle; with repeat, each epoch is re-shuffled
   with the seed folded with the epoch number, so epochs differ but are deterministic);
4. repeat (forever) or one pass;
5. optional packing of the texts into {"text": str} of at most pack_bytes UTF-8 bytes
   (noembed.data.packing);
6. batching into lists of batch_size elements, then `batch_fn(elements) -> dict of arrays`,
   called once per batch, to which `example_valid` bool [B] is added.

Without repeat (eval), no example is dropped or seen twice: the last batch is filled up with
padding elements (the keys of a real element, with "" for str and zeros for numbers), marked
False in `example_valid`. Without packing, every process also yields the same number of batches,
ceil(ceil(N / P) / B), adding all-padding batches where its shard is short, so a multi-process
eval loop runs the same number of steps on every process; with packing the number of packs per
process is not known ahead, so the processes' batch counts may differ. With repeat every
`example_valid` is all True.

State: the iterator's get_state() holds ints, str and bools only (JSON-serialisable), and
set_state() resumes exactly where get_state() was taken, mid-epoch or across epochs.

Workers (num_workers > 0) use grain's mp_prefetch over the whole pipeline, so batch_fn runs in
the workers. grain gives each worker every num_workers-th element of the stage before the first
iterator stage: without packing that is whole batches, and the output is the same as with
num_workers=0; with packing each worker packs its own elements, so the packs (and every
worker's final partial batch, without repeat) depend on num_workers, deterministically. A state
restores into an iterator with the same num_workers.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np
from absl import flags

from noembed.data import packing
from noembed.text.common import check_positive

BatchFn = Callable[[list[dict[str, Any]]], dict[str, np.ndarray]]

# One background thread builds the next batches while the caller uses the current one; grain's
# default (16 threads, 500 elements ahead) would build 500 batches ahead where elements are
# batches, and costs a second per restore on 2 cores.
_PREFETCH_BATCHES = 2
_BATCH_READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=_PREFETCH_BATCHES)
_ELEMENT_READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=64)


def normalise(record: dict[str, Any]) -> dict[str, Any]:
  """A source record with bytes values decoded as UTF-8 str; other values unchanged."""
  return {key: value.decode("utf-8") if isinstance(value, bytes) else value
          for key, value in record.items()}


def padding_like(element: dict[str, Any]) -> dict[str, Any]:
  """An element with the keys of `element`: "" for str, zeros of the same dtype otherwise."""
  return {key: "" if isinstance(value, str) else np.zeros_like(value)
          for key, value in element.items()}


def _finish_batch(items: Sequence[tuple[bool, dict[str, Any]]], *, batch_fn: BatchFn,
                  batch_size: int, padding: dict[str, Any]) -> dict[str, np.ndarray]:
  """(valid, element) pairs -> batch_fn's dict plus example_valid, padded to batch_size."""
  items = list(items) + [(False, padding)] * (batch_size - len(items))
  batch = dict(batch_fn([dict(element) for _, element in items]))
  if "example_valid" in batch:
    raise ValueError("batch_fn returned the reserved key 'example_valid'; "
                     f"got keys {sorted(batch)}")
  batch["example_valid"] = np.array([valid for valid, _ in items], dtype=bool)
  return batch


def _mark_valid(element: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
  return True, element


def _padding_item(index: int, *, padding: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
  del index
  return False, padding


def _check_args(source_length: int, batch_size: int, seed: int, process_index: int,
                process_count: int, pack_bytes: int | None, num_workers: int) -> None:
  check_positive("batch_size", batch_size)
  check_positive("process_count", process_count)
  if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
    raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
  if not isinstance(process_index, int) or not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, {process_count}), got {process_index!r}")
  if source_length < process_count:
    raise ValueError(f"the source has {source_length} examples, fewer than process_count="
                     f"{process_count}: some process would read nothing")
  if pack_bytes is not None:
    packing.check_pack_bytes(pack_bytes)
  if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
    raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")


def make_iterator(source: Sequence[dict[str, Any]], *, batch_fn: BatchFn, batch_size: int,
                  seed: int, shuffle: bool, repeat: bool, process_index: int = 0,
                  process_count: int = 1, pack_bytes: int | None = None,
                  num_workers: int = 0) -> grain.DatasetIterator:
  """This process's iterator of batches over `source`; see the module docstring for the order.

  source: random-access sequence (len, getitem) of example dicts, e.g. a tfds data source.
  batch_fn: list of batch_size element dicts -> dict of numpy arrays with batch_size rows.
  pack_bytes: pack the texts into {"text": str} of at most this many UTF-8 bytes, or None.
  """
  _check_args(len(source), batch_size, seed, process_index, process_count, pack_bytes,
              num_workers)
  dataset = grain.MapDataset.source(source)[process_index::process_count].map(normalise)
  if shuffle:
    dataset = dataset.shuffle(seed=seed)
  if repeat:
    dataset = dataset.repeat()

  padding = padding_like(normalise(source[0])) if pack_bytes is None else {"text": ""}
  finish_batch = functools.partial(
      _finish_batch, batch_fn=batch_fn, batch_size=batch_size, padding=padding)
  if pack_bytes is None:
    dataset = dataset.map(_mark_valid)
    if not repeat:
      num_batches = math.ceil(math.ceil(len(source) / process_count) / batch_size)
      num_padding = num_batches * batch_size - len(dataset)
      if num_padding:
        padding_dataset = grain.MapDataset.range(num_padding).map(
            functools.partial(_padding_item, padding=padding))
        dataset = grain.MapDataset.concatenate([dataset, padding_dataset])
    batched = dataset.batch(batch_size, batch_fn=list).map(finish_batch).to_iter_dataset(
        _BATCH_READ_OPTIONS)
  else:
    packed = packing.PackTextIterDataset(dataset.to_iter_dataset(_ELEMENT_READ_OPTIONS),
                                         pack_bytes)
    batched = grain.experimental.ThreadPrefetchIterDataset(
        packed.map(_mark_valid).batch(batch_size, batch_fn=list).map(finish_batch),
        prefetch_buffer_size=_PREFETCH_BATCHES)
  if num_workers:
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()  # grain's workers read absl flags
    batched = batched.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(batched)
