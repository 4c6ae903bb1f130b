"""Greedy packing of short texts into texts of at most `pack_bytes` UTF-8 bytes (a grain stage).

Pretraining on UDHR sentences wastes most of a fixed-length example on padding; packing joins
consecutive texts with "\\n" until the next one would not fit, as T5's `pack_dataset` does for
tokens. grain 0.2.18's own packers (FirstFitPackIterDataset, ConcatThenSplitIterDataset) pack
arrays of token ids, not str, and packing before the front end is what keeps every input method
on the same packed text, so this stage packs str itself.

Rules, for each incoming element's "text" (other keys are dropped; empty texts are skipped):
- it joins the current pack (after a "\\n") when the result fits in pack_bytes;
- otherwise the current pack is emitted and the text starts a new one;
- a text longer than pack_bytes is cut at code point boundaries into pieces of at most
  pack_bytes bytes (nothing is dropped); all but the last piece are emitted whole and the last
  starts the new pack.
The iterator state holds the parent's state plus the unfinished pack and the pieces waiting to
be emitted (plain str and int: JSON-serialisable), so a restore resumes exactly.
"""

import collections
from typing import Any

import grain

from noembed.text.common import check_positive

SEPARATOR = "\n"
# The longest UTF-8 encoding of one code point: any smaller pack could not hold every text.
MIN_PACK_BYTES = 4


def check_pack_bytes(pack_bytes: int) -> int:
  """Raises ValueError unless pack_bytes is an int of at least MIN_PACK_BYTES."""
  check_positive("pack_bytes", pack_bytes)
  if pack_bytes < MIN_PACK_BYTES:
    raise ValueError(f"pack_bytes must be at least {MIN_PACK_BYTES} (one UTF-8 code point), "
                     f"got {pack_bytes}")
  return pack_bytes


def split_utf8(text: str, max_bytes: int) -> list[str]:
  """`text` cut at code point boundaries into pieces of at most `max_bytes` UTF-8 bytes."""
  check_pack_bytes(max_bytes)
  encoded = text.encode("utf-8", "surrogatepass")
  pieces = []
  start = 0
  while len(encoded) - start > max_bytes:
    end = start + max_bytes
    while encoded[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte: back up to the lead byte
      end -= 1
    pieces.append(encoded[start:end].decode("utf-8", "surrogatepass"))
    start = end
  pieces.append(encoded[start:].decode("utf-8", "surrogatepass"))
  return pieces


def _num_bytes(text: str) -> int:
  return len(text.encode("utf-8", "surrogatepass"))


class _PackTextIterator(grain.DatasetIterator):
  """Iterator of PackTextIterDataset; see the module docstring for the rules."""

  def __init__(self, parent: grain.DatasetIterator, pack_bytes: int):
    super().__init__(parent)
    self._pack_bytes = pack_bytes
    self._pack = ""            # the unfinished pack
    self._pack_size = 0        # its UTF-8 bytes
    self._ready = collections.deque()  # finished packs, in output order
    self._parent_exhausted = False

  def _add(self, text: str) -> None:
    size = _num_bytes(text)
    if self._pack and self._pack_size + len(SEPARATOR) + size <= self._pack_bytes:
      self._pack += SEPARATOR + text
      self._pack_size += len(SEPARATOR) + size
      return
    if self._pack:
      self._ready.append(self._pack)
    pieces = split_utf8(text, self._pack_bytes) if size > self._pack_bytes else [text]
    self._ready.extend(pieces[:-1])
    self._pack = pieces[-1]
    self._pack_size = _num_bytes(self._pack)

  def __next__(self) -> dict[str, str]:
    while not self._ready:
      if self._parent_exhausted:
        if not self._pack:
          raise StopIteration
        self._ready.append(self._pack)
        self._pack, self._pack_size = "", 0
        break
      try:
        text = next(self._parent)["text"]
      except StopIteration:
        self._parent_exhausted = True
        continue
      if text:
        self._add(text)
    return {"text": self._ready.popleft()}

  def get_state(self) -> dict[str, Any]:
    return {
        "parent": self._parent.get_state(),
        "pack": self._pack,
        "ready": list(self._ready),
        "parent_exhausted": self._parent_exhausted,
    }

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state["parent"])
    self._pack = state["pack"]
    self._pack_size = _num_bytes(self._pack)
    self._ready = collections.deque(state["ready"])
    self._parent_exhausted = state["parent_exhausted"]

  def __str__(self) -> str:
    return f"PackTextIterator(pack_bytes={self._pack_bytes})"


class PackTextIterDataset(grain.IterDataset):
  """Elements {"text": str, ...} -> {"text": packed str} of at most pack_bytes UTF-8 bytes."""

  def __init__(self, parent: grain.IterDataset, pack_bytes: int):
    super().__init__(parent)
    self._pack_bytes = check_pack_bytes(pack_bytes)

  def __iter__(self) -> grain.DatasetIterator:
    return _PackTextIterator(self._parent.__iter__(), self._pack_bytes)

  def __str__(self) -> str:
    return f"PackTextIterDataset(pack_bytes={self._pack_bytes})"
