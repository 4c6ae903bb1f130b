"""noembed.text.subword, its embedder (noembed.nn.embedders.table) and registry entry."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noembed import inputs
from noembed.data import udhr
from noembed.inputs import subword as entry
from noembed.text import bytes as byte_text
from noembed.text import subword
from noembed.text.common import TruncationStats

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# U+2581 is sentencepiece's space marker: it decodes as a space (see the module docstring).
TEXTS = st.text(st.characters(exclude_characters=["\u2581"], exclude_categories=("Cs",)),
               max_size=40)


def _latin_texts():
  return [example["text"] for example in udhr.load_examples("train")
          if example["script"] == "Latn"][:300]


@pytest.fixture(scope="module", params=subword.MODEL_TYPES)
def model_path(request, tmp_path_factory):
  prefix = str(tmp_path_factory.mktemp("subword") / request.param)
  return subword.train(_latin_texts(), vocab_size=600, model_type=request.param,
                       model_prefix=prefix)


@pytest.fixture(scope="module")
def model(model_path):
  return subword.SubwordModel(model_path)


def test_reserved_ids(model):
  pieces = [model.processor.id_to_piece(i) for i in range(5)]
  assert pieces == ["<pad>", "</s>", "<unk>", "<mask>", "<0x00>"]
  assert model.vocab_size == 600
  ids, mask, unit_bytes = model.encode(["<mask> </s>"], 32)
  assert subword.MASK_ID not in ids[0][mask[0]][:-1].tolist()
  assert ids.dtype == np.int32 and unit_bytes.dtype == np.int32 and mask.dtype == bool


def test_training_is_deterministic(model_path, tmp_path):
  model_type = subword.SubwordModel(model_path).model_type
  again = subword.train(_latin_texts(), vocab_size=600, model_type=model_type,
                        model_prefix=str(tmp_path / "again"))
  with open(model_path, "rb") as first, open(again, "rb") as second:
    assert first.read() == second.read()


def test_held_out_corpus_round_trips_with_exact_unit_bytes(model):
  # The test split has every script; unseen characters are spelled with byte pieces.
  texts = udhr.load_texts("test")
  stats = TruncationStats()
  ids, mask, unit_bytes = model.encode(texts, 8192, stats=stats)
  assert stats.truncated_texts == 0
  assert model.decode(ids) == texts
  np.testing.assert_array_equal(unit_bytes.sum(1), byte_text.num_bytes(texts))
  assert not unit_bytes[~mask].any()
  assert not (ids == subword.UNK_ID).any()
  ends = mask.sum(1) - 1
  assert (ids[np.arange(len(texts)), ends] == subword.EOS_ID).all()


@SETTINGS
@given(texts=st.lists(TEXTS, max_size=4), add_eos=st.booleans())
def test_decode_inverts_encode(model, texts, add_eos):
  ids, mask, unit_bytes = model.encode(texts, 400, add_eos=add_eos)
  assert model.decode(ids) == texts
  np.testing.assert_array_equal(unit_bytes.sum(1), byte_text.num_bytes(texts))
  np.testing.assert_array_equal(mask.sum(1) - add_eos, (ids > subword.MASK_ID).sum(1))


@SETTINGS
@given(text=TEXTS, max_length=st.integers(1, 12), add_eos=st.booleans())
def test_truncation_cuts_between_characters(model, text, max_length, add_eos):
  stats = TruncationStats()
  ids, mask, _ = model.encode([text], max_length, add_eos=add_eos, stats=stats)
  full, full_mask, _ = model.encode([text], 400, add_eos=False)
  kept = int(mask.sum()) - add_eos
  total = int(full_mask.sum())
  np.testing.assert_array_equal(ids[0, :kept], full[0, :kept])
  assert kept <= max_length - add_eos and text.startswith(model.decode(ids)[0])
  assert max_length - add_eos - kept <= 3 or kept == total
  assert (stats.truncated_texts, stats.dropped_units) == (int(total > kept), total - kept)


def test_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match="model_type"):
    subword.train(["a"], vocab_size=300, model_type="wordpiece", model_prefix=str(tmp_path / "m"))
  with pytest.raises(ValueError, match="vocab_size"):
    subword.train(["a"], vocab_size=0, model_type="bpe", model_prefix=str(tmp_path / "m"))
  with pytest.raises(ValueError, match="character_coverage"):
    subword.train(["a"], vocab_size=300, model_type="bpe", model_prefix=str(tmp_path / "m"),
                  character_coverage=0.5)


def test_rejects_a_model_without_the_reserved_ids(tmp_path):
  foreign = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(_latin_texts()[:50]),
                                 model_writer=foreign, vocab_size=200, minloglevel=2)
  path = tmp_path / "foreign.model"
  path.write_bytes(foreign.getvalue())
  with pytest.raises(ValueError, match="foreign.model"):
    subword.SubwordModel(str(path))


def test_registry_entry_and_embedder(model_path):

  assert inputs._REGISTRY["subword"].encode is entry.encode  # pylint: disable=protected-access
  config = entry.default_config()
  config.model_file = model_path
  config.max_length = 16
  batch = entry.encode(["a short text", ""], config, None)
  assert set(batch) == {"ids", "mask", "unit_bytes"}
  units = entry.masked_units(config)
  assert units.vocab_size == 600
  maskable = np.asarray(units.maskable(batch))
  np.testing.assert_array_equal(maskable, batch["ids"] > subword.MASK_ID)
  corrupted = units.corrupt(batch, jnp.asarray(maskable))
  assert (np.asarray(corrupted["ids"])[maskable] == subword.MASK_ID).all()
  np.testing.assert_array_equal(units.targets(batch)[..., 0], batch["ids"])
  np.testing.assert_array_equal(units.unit_bytes(batch), batch["unit_bytes"])

  embedder = entry.build_embedder(config, d_model=8, dtype=jnp.float32,
                                  param_dtype=jnp.float32)
  variables = embedder.init(jax.random.key(0), batch, deterministic=True)
  table = variables["params"]["embedding"]["embedding"]
  assert table.names == ("vocab", "embed") and table.value.shape == (600, 8)
  embedded = embedder.apply(variables, batch, deterministic=True)
  np.testing.assert_allclose(embedded.x, np.asarray(table.value)[batch["ids"]], atol=0)
  np.testing.assert_array_equal(embedded.mask, batch["mask"])
  longer = {k: np.pad(v, ((0, 0), (0, 8))) for k, v in batch.items()}
  padded = embedder.apply(variables, longer, deterministic=True)
  np.testing.assert_array_equal(padded.x[:, :16], embedded.x)
  bf16 = entry.build_embedder(config, d_model=8, dtype=jnp.bfloat16, param_dtype=jnp.float32)
  assert bf16.apply(variables, batch, deterministic=True).x.dtype == jnp.bfloat16


def test_cached_model_is_trained_once(tmp_path, monkeypatch):
  monkeypatch.setenv("NOEMBED_CACHE", str(tmp_path))
  monkeypatch.setattr(udhr, "load_texts", lambda split: _latin_texts()[:100])
  entry._load.cache_clear()  # pylint: disable=protected-access
  config = entry.default_config()
  config.vocab_size = 400
  try:
    first = entry.load_model(config)
    files = sorted(p.name for p in tmp_path.iterdir())
    written = (tmp_path / files[0]).stat().st_mtime_ns
    entry._load.cache_clear()  # pylint: disable=protected-access
    second = entry.load_model(config)
  finally:
    entry._load.cache_clear()  # pylint: disable=protected-access
  assert len(files) == 1 and files[0].startswith("subword-unigram-400-0.98-")
  assert sorted(p.name for p in tmp_path.iterdir()) == files
  assert (tmp_path / files[0]).stat().st_mtime_ns == written
  assert first.path == second.path and second.vocab_size == 400
