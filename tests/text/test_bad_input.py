"""Odd and wrong input for the bytes, codepoints, noise and subword front ends."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from noembed.data import udhr
from noembed.text import bytes as byte_text
from noembed.text import codepoints, noise, subword
from noembed.text.common import TruncationStats

ODD_TEXTS = [
    "", " ", "\t\n\r ", "\0", "a\0b", "\ud800", "x\udfffy", "\ud83d\ude00", "\x01\x07\x1b[0m\x7f",
    "abc שלום عربي ABC", "\u202eevil\u202c", "👨‍👩‍👧‍👦🏳️‍🌈", "e\u0301\u0308\u0327",
    "\ufeff\u200b\u200d",
    "\U0010ffff\U000e0001", "</s><pad><unk><extra_id_0><mask>", "\ue000\ue001\ue003",
]
HUGE = "ab\u00e9\U0001F600" * (10 * 2**20 // 8)  # 10 MiB of UTF-8, 1- to 4-byte characters
ROOT = str(pathlib.Path(__file__).resolve().parents[2])
BAD_LENGTHS = [0, -1, 1.5, True, "8", None]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  texts = [example["text"] for example in udhr.load_examples("train")
           if example["script"] == "Latn"][:60]
  prefix = str(tmp_path_factory.mktemp("bad_input") / "tiny")
  return subword.SubwordModel(subword.train(texts, vocab_size=400, model_type="unigram",
                                            model_prefix=prefix))


def _front_ends(model):
  return {
      "bytes": lambda texts, n, stats=None: byte_text.encode(texts, n, stats=stats),
      "bytes_split": lambda texts, n, stats=None: byte_text.encode(
          texts, n, stats=stats, split_characters=True),
      "codepoints": lambda texts, n, stats=None: codepoints.encode(texts, n, stats=stats),
      "codepoint_pairs": lambda texts, n, stats=None: codepoints.encode(
          texts, n, pairs=texts[::-1], stats=stats),
      "subword": lambda texts, n, stats=None: model.encode(texts, n, stats=stats),
  }


@pytest.mark.parametrize("name", ["bytes", "bytes_split", "codepoints", "codepoint_pairs",
                                  "subword"])
@pytest.mark.parametrize("max_length", [3, 64])
def test_odd_text_encodes_with_consistent_shapes(model, name, max_length):
  arrays = _front_ends(model)[name](ODD_TEXTS, max_length)
  for array in arrays:
    assert array.shape == (len(ODD_TEXTS), max_length)
  ids, mask = arrays[0], arrays[1]
  assert mask.dtype == bool and ids.dtype == np.int32
  assert (mask[:, :-1] >= mask[:, 1:]).all()  # real positions first, then padding
  assert not ids[~mask].any()


def test_odd_text_decodes(model):
  ids, _ = byte_text.encode(ODD_TEXTS, 64)
  assert len(byte_text.decode(ids)) == len(ODD_TEXTS)
  assert len(codepoints.decode(codepoints.encode(ODD_TEXTS, 64)[0])) == len(ODD_TEXTS)
  assert len(model.decode(model.encode(ODD_TEXTS, 64)[0])) == len(ODD_TEXTS)


@pytest.mark.parametrize("name", sorted(noise.NOISES))
def test_odd_text_survives_noise(name):
  noisy = noise.NOISES[name](ODD_TEXTS, 1.0, 0)
  assert len(noisy) == len(ODD_TEXTS) and all(isinstance(text, str) for text in noisy)
  assert noise.NOISES[name](ODD_TEXTS, 1.0, 0) == noisy


@pytest.mark.parametrize("name", ["bytes", "codepoints", "subword"])
def test_huge_text_is_truncated_and_counted(model, name):
  text = HUGE if name != "subword" else HUGE[:2**18]  # sentencepiece takes ~1 s per MiB
  stats = TruncationStats()
  arrays = _front_ends(model)[name]([text, "short"], 32, stats=stats)
  # Full but for at most 3 positions (the cut does not split a character's bytes).
  assert arrays[1][0].sum() >= 32 - 3 and stats.texts == 2 and stats.truncated_texts == 1
  if name == "bytes":  # eos
    assert stats.dropped_units == len(text.encode("utf-8")) - (arrays[1][0].sum() - 1)
  if name == "codepoints":  # [CLS] and [SEP]
    assert stats.dropped_units == len(text) - (arrays[1][0].sum() - 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(noise.NOISES))
def test_huge_text_survives_noise(name):
  assert len(noise.NOISES[name]([HUGE], 0.1, 0)[0]) > 0


@pytest.mark.slow
def test_huge_text_subword(model):
  stats = TruncationStats()
  model.encode([HUGE], 32, stats=stats)
  assert stats.truncated_texts == 1


@pytest.mark.parametrize("name", ["bytes", "bytes_split", "codepoints", "codepoint_pairs",
                                  "subword"])
def test_non_str_items_raise_type_error_naming_the_index(model, name):
  encode = _front_ends(model)[name]
  for bad in (["ok", b"bytes"], ["ok", None], ["ok", 3]):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
      encode(bad, 8)
  with pytest.raises(TypeError, match="single str"):
    encode("not a list", 8)


@pytest.mark.parametrize("name", ["bytes", "codepoints", "subword"])
@pytest.mark.parametrize("max_length", BAD_LENGTHS)
def test_bad_max_length_raises_value_error_naming_it(model, name, max_length):
  with pytest.raises(ValueError, match="max_length"):
    _front_ends(model)[name](["a"], max_length)


def test_bad_decode_input(model):
  for decode in (byte_text.decode, codepoints.decode, model.decode):
    with pytest.raises(ValueError, match="shape"):
      decode(np.zeros(3, dtype=np.int32))
  with pytest.raises(ValueError, match="code point ids"):
    codepoints.decode([[0x110000]])


def test_text_modules_import_neither_jax_nor_flax():
  script = ("import sys; import noembed.text.bytes, noembed.text.codepoints, "
            "noembed.text.noise, noembed.text.subword; "
            "print([m for m in ('jax', 'flax') if m in sys.modules])")
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": ROOT})
  assert result.stdout.strip() == "[]"


def test_ids_are_the_same_in_another_process(model):
  script = (
      "import json, sys; from noembed.text import bytes as b, codepoints as c, subword as s; "
      f"texts = {ascii(ODD_TEXTS)}; m = s.SubwordModel({model.path!r}); "
      "json.dump([b.encode(texts, 16)[0].tolist(), c.encode(texts, 16)[0].tolist(), "
      "m.encode(texts, 16)[0].tolist()], sys.stdout)")
  env = {**os.environ, "PYTHONHASHSEED": "4321", "PYTHONPATH": ROOT}
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, env=env)
  expected = [byte_text.encode(ODD_TEXTS, 16)[0].tolist(),
              codepoints.encode(ODD_TEXTS, 16)[0].tolist(), model.encode(ODD_TEXTS, 16)[0].tolist()]
  assert json.loads(result.stdout) == expected
