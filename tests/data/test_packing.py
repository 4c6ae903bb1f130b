"""Text packing: golden cases, a reference implementation, invariants and exact resume."""

import json

import grain
import hypothesis
import pytest
from hypothesis import strategies as st

from noembed.data import packing


def _pack(texts, pack_bytes):
  dataset = grain.MapDataset.source([{"text": text} for text in texts]).to_iter_dataset()
  return [element["text"] for element in packing.PackTextIterDataset(dataset, pack_bytes)]


def _reference_pack(texts, pack_bytes):
  """Greedy packing written independently, filling a fresh pack one character at a time."""
  def size(text):
    return len(text.encode("utf-8"))
  packs, current = [], None
  for text in filter(None, texts):
    if current is not None and size(current) + 1 + size(text) <= pack_bytes:
      current += "\n" + text
      continue
    if current is not None:
      packs.append(current)
    current = ""
    for character in text:
      if size(current + character) > pack_bytes:
        packs.append(current)
        current = ""
      current += character
  if current is not None:
    packs.append(current)
  return packs


def test_golden_packs():
  assert _pack(["ab", "cd", "efghij", "k", "", "lm"], 6) == ["ab\ncd", "efghij", "k\nlm"]
  # A text longer than pack_bytes: whole pieces first, its tail then takes the next text.
  assert _pack(["x", "abcdefghijklmn", "o"], 6) == ["x", "abcdef", "ghijkl", "mn\no"]
  # 3-byte characters are never cut: "€" is 3 bytes, so 7 bytes hold two of them.
  assert _pack(["€€€€€"], 7) == ["€€", "€€", "€"]


def test_split_utf8_never_cuts_a_code_point():
  text = "a€😀b"  # 1 + 3 + 4 + 1 bytes
  assert packing.split_utf8(text, 4) == ["a€", "😀", "b"]
  assert packing.split_utf8(text, 5) == ["a€", "😀b"]


@pytest.mark.parametrize("pack_bytes", [0, 3, -1, 2.5])
def test_too_small_pack_bytes_raise(pack_bytes):
  with pytest.raises(ValueError, match="pack_bytes"):
    packing.PackTextIterDataset(grain.MapDataset.source([]).to_iter_dataset(), pack_bytes)


_texts = st.lists(st.text(alphabet=st.sampled_from("ab €😀\u0301\n"), max_size=30), max_size=25)


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(texts=_texts, pack_bytes=st.integers(4, 24))
def test_matches_reference_and_invariants(texts, pack_bytes):
  packs = _pack(texts, pack_bytes)
  assert packs == _reference_pack(texts, pack_bytes)
  assert all(0 < len(text.encode("utf-8")) <= pack_bytes for text in packs)
  # Nothing is lost: the characters of the packs are those of the texts plus separators.
  assert "".join(packs).replace("\n", "") == "".join(texts).replace("\n", "")


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(texts=_texts, pack_bytes=st.integers(4, 24), data=st.data())
def test_resume_from_any_point_is_exact(texts, pack_bytes, data):
  dataset = packing.PackTextIterDataset(
      grain.MapDataset.source([{"text": text} for text in texts]).to_iter_dataset(), pack_bytes)
  expected = [element["text"] for element in dataset]
  stop = data.draw(st.integers(0, len(expected)))
  iterator = iter(dataset)
  head = [next(iterator)["text"] for _ in range(stop)]
  state = json.loads(json.dumps(iterator.get_state()))
  resumed = iter(dataset)
  resumed.set_state(state)
  assert head + [element["text"] for element in resumed] == expected


def test_state_carries_the_unfinished_pack_and_pending_pieces():
  dataset = packing.PackTextIterDataset(grain.MapDataset.source(
      [{"text": "ab"}, {"text": "0123456789abcdef"}, {"text": "c"}]).to_iter_dataset(), 4)
  iterator = iter(dataset)
  assert next(iterator) == {"text": "ab"}
  state = iterator.get_state()
  assert state["ready"] == ["0123", "4567", "89ab"] and state["pack"] == "cdef"
  assert next(iterator) == {"text": "0123"}
