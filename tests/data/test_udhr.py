"""The UDHR corpus: dedup rule, split rule, labels, golden counts and the tfds build."""

import collections
import hashlib
import os
import subprocess
import sys

import gflanguages
import pytest

from noembed.data import pipeline, tfds_udhr, udhr

# Counts of `python -m noembed.data.udhr` for the pinned gflanguages (requirements.txt).
GOLDEN_COUNTS = {
    "0.7.11": {
        "train": {"languages": 752, "scripts": 157, "texts": 3438, "bytes": 859728},
        "validation": {"languages": 237, "scripts": 73, "texts": 367, "bytes": 92996},
        "test": {"languages": 250, "scripts": 73, "texts": 391, "bytes": 89606},
    },
}


def _all_examples():
  return [example for split in udhr.SPLITS for example in udhr.load_examples(split)]


def test_language_texts_rule():
  sample_text_proto = type(gflanguages.LoadLanguages()["en_Latn"].sample_text)
  sample_text = sample_text_proto(
      masthead_full="AaBb", masthead_partial="Cc", note="a comment, not text",
      poster_lg="All", poster_md="Whereas the", styles="Whereas the people  ",
      specimen_48="Fragment not elsewhere",
      specimen_21="All human beings are born free.\n\nWhereas the people of the United Nations",
      specimen_16="All human beings are born free.\nEveryone has the right to life.")
  assert udhr.language_texts(sample_text) == [
      "All human beings are born free.", "Everyone has the right to life.",
      "Fragment not elsewhere", "Whereas the people of the United Nations"]


def test_no_text_contains_another_of_its_language():
  texts_by_language = collections.defaultdict(list)
  for example in _all_examples():
    texts_by_language[example["language"]].append(example["text"])
  for language, texts in texts_by_language.items():
    for text in texts:
      assert text == text.strip() and text
      assert not any(text != other and text in other for other in texts), (language, text)


def test_texts_are_unique_and_splits_disjoint():
  texts = [example["text"] for example in _all_examples()]
  assert len(texts) == len(set(texts))


def test_split_rule_follows_the_sha256_bucket():
  train_languages = {example["language"] for example in udhr.load_examples("train")}
  for split, bucket in (("test", 0), ("validation", 1)):
    for example in udhr.load_examples(split):
      digest = hashlib.sha256(example["text"].encode("utf-8")).digest()
      assert int.from_bytes(digest[:8], "big") % 10 == bucket
      assert example["language"] in train_languages
  # Train texts outside buckets 2-9 are the moved ones: the only train text of their language.
  train_counts = collections.Counter(e["language"] for e in udhr.load_examples("train"))
  for example in udhr.load_examples("train"):
    digest = hashlib.sha256(example["text"].encode("utf-8")).digest()
    if int.from_bytes(digest[:8], "big") % 10 < 2:
      assert train_counts[example["language"]] == 1


def test_every_language_is_in_train():
  languages = {example["language"] for example in _all_examples()}
  assert {example["language"] for example in udhr.load_examples("train")} == languages
  assert udhr.label_names("language") == sorted(languages)


def test_examples_match_gflanguages_metadata():
  languages = gflanguages.LoadLanguages()
  for example in _all_examples():
    assert example["script"] == languages[example["language"]].script
  english = [e["text"] for e in _all_examples() if e["language"] == "en_Latn"]
  assert "No one shall be subjected to arbitrary arrest, detention or exile." in english
  assert not any(text.startswith("AaLl") for text in english)  # the masthead is not text
  # Shared by ar_Arab and arb_Arab, so dropped (ambiguous label).
  shared = "يولد جميع الناس أحرارًا"
  assert not any(example["text"].startswith(shared) for example in _all_examples())


def test_golden_counts():
  golden = GOLDEN_COUNTS.get(gflanguages.__version__)
  if golden is None:
    pytest.skip(f"no golden counts for gflanguages {gflanguages.__version__}")
  assert {split: udhr.split_counts(split) for split in udhr.SPLITS} == golden
  assert len(udhr.label_names("language")) == 752
  assert len(udhr.label_names("script")) == 157


def test_label_names_are_sorted_vocabularies():
  scripts = udhr.label_names("script")
  assert scripts == sorted(set(scripts)) and "Latn" in scripts and "Arab" in scripts
  assert "en_Latn" in udhr.label_names("language")
  with pytest.raises(ValueError, match="'lang'"):
    udhr.label_names("lang")


@pytest.mark.parametrize("split", ["dev", "train[:10]", "TRAIN"])
def test_unknown_split_raises_naming_it(split):
  with pytest.raises(ValueError, match="unknown split"):
    udhr.load_examples(split)
  with pytest.raises(ValueError, match="unknown split"):
    udhr.load_texts(split)


def test_splits_do_not_depend_on_python_hash_seed():
  code = ("import hashlib; from noembed.data import udhr; print(hashlib.sha256(repr("
          "[udhr.load_examples(s) for s in udhr.SPLITS]).encode()).hexdigest())")
  digests = set()
  for seed in ("1", "2"):
    env = {**os.environ, "PYTHONHASHSEED": seed}
    digests.add(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                               capture_output=True, text=True).stdout)
  assert len(digests) == 1


def test_main_prints_the_counts(capsys):
  udhr.main()
  output = capsys.readouterr().out
  for split in udhr.SPLITS:
    counts = udhr.split_counts(split)
    assert f"{counts['texts']:>8}{counts['bytes']:>10}" in output


def test_tfds_source_equals_load_examples(udhr_data_dir):
  for split in udhr.SPLITS:
    source = tfds_udhr.data_source(split, udhr_data_dir)
    assert len(source) == len(udhr.load_examples(split))
    assert [pipeline.normalise(record) for record in source] == udhr.load_examples(split)


def test_second_build_reuses_the_dataset(udhr_data_dir):
  data_path = tfds_udhr.NoembedUdhr(data_dir=udhr_data_dir).data_path
  def snapshot():
    return sorted((path.name, os.stat(path).st_mtime_ns) for path in data_path.iterdir())
  before = snapshot()
  tfds_udhr.build(udhr_data_dir)
  assert snapshot() == before and len(before) == 5  # 3 array_record files + 2 json


def test_concurrent_builds_share_one_dataset(tmp_path):
  code = f"from noembed.data import tfds_udhr; tfds_udhr.build({str(tmp_path)!r})"
  processes = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
               for _ in range(2)]
  for process in processes:
    assert process.wait() == 0, process.stderr.read().decode()[-2000:]
  assert len(tfds_udhr.data_source("test", str(tmp_path))) == len(udhr.load_examples("test"))
  version_dirs = list((tmp_path / tfds_udhr.NAME / tfds_udhr.CONFIG_NAME).iterdir())
  assert [path.name for path in version_dirs] == ["1.0.0"]


def test_default_data_dir_reads_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("NOEMBED_DATA_DIR", str(tmp_path))
  assert tfds_udhr.default_data_dir() == str(tmp_path)
  monkeypatch.delenv("NOEMBED_DATA_DIR")
  assert tfds_udhr.default_data_dir() == os.path.expanduser("~/.cache/noembed/tfds")


def test_tfds_unknown_split_raises(udhr_data_dir):
  with pytest.raises(ValueError, match="'dev'"):
    tfds_udhr.data_source("dev", udhr_data_dir)
