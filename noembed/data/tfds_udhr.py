"""tfds builder of the bundled UDHR corpus (noembed.data.udhr), written as array_record.

Built once into a cache dir from the installed gflanguages, with no network and no TensorFlow:
records are written as array_record (tfrecord would need TensorFlow) and read back with
`tfds.data_source`, a random-access sequence of dicts {text, language, script} whose values
decode to bytes. Example order in each split is that of `udhr.load_examples(split)` (tfds'
shuffling by key is disabled; the grain pipeline shuffles). The builder config is named after
the gflanguages version, so a different gflanguages builds a new dataset beside the old one.
"""

import contextlib
import fcntl
import os
import pathlib

import gflanguages
import tensorflow_datasets as tfds

from noembed.data import udhr

NAME = "noembed_udhr"
CONFIG_NAME = "gflanguages_" + gflanguages.__version__.replace(".", "_")


class NoembedUdhr(tfds.core.GeneratorBasedBuilder):
  """UDHR excerpts per language id, split by text (see noembed.data.udhr for the rules)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Non-overlapping UDHR texts from gflanguages sample_text."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(
      name=CONFIG_NAME, description=f"from gflanguages {gflanguages.__version__}")]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=udhr.__doc__,
        features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(),
            "language": tfds.features.Text(),
            "script": tfds.features.Text(),
        }),
        disable_shuffling=True,
        homepage="https://github.com/googlefonts/lang",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in udhr.SPLITS}

  def _generate_examples(self, split):
    for index, example in enumerate(udhr.load_examples(split)):
      yield index, example


def default_data_dir() -> str:
  """$NOEMBED_DATA_DIR, else ~/.cache/noembed/tfds."""
  return os.environ.get("NOEMBED_DATA_DIR") or os.path.expanduser("~/.cache/noembed/tfds")


@contextlib.contextmanager
def _build_lock(data_dir: pathlib.Path):
  """An exclusive flock on data_dir/noembed_udhr.lock, so concurrent builders take turns."""
  data_dir.mkdir(parents=True, exist_ok=True)
  with open(data_dir / f"{NAME}.lock", "w") as lock_file:
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock_file, fcntl.LOCK_UN)


def build(data_dir: str | None = None) -> None:
  """Builds the dataset into data_dir unless it is there already (then it is reused).

  tfds writes into a temporary dir and renames it when complete; the lock file makes a second
  process wait for the first and then reuse its result.
  """
  data_dir = pathlib.Path(data_dir or default_data_dir())
  builder = NoembedUdhr(data_dir=os.fspath(data_dir))
  if builder.data_path.exists():
    return
  with _build_lock(data_dir):
    NoembedUdhr(data_dir=os.fspath(data_dir)).download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(
            compute_stats=tfds.download.ComputeStatsMode.SKIP))


def data_source(split: str, data_dir: str | None = None):
  """The built split as a tfds data source (random access, len()); builds it if missing."""
  udhr.check_split(split)
  data_dir = data_dir or default_data_dir()
  build(data_dir)
  return tfds.data_source(f"{NAME}/{CONFIG_NAME}", split=split, data_dir=data_dir,
                          download=False)
