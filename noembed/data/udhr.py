"""The bundled corpus: Universal Declaration of Human Rights excerpts shipped by gflanguages.

Source: `gflanguages.LoadLanguages()` (Google Fonts language metadata), whose `sample_text` holds
UDHR excerpts for ~750 language ids. Its fields were cut from the same UDHR paragraphs by
gflanguages' own `udhr.SampleTextExtractor`, so they overlap heavily: the phrases (styles,
tester, poster_*, specimen_48) are prefixes of paragraphs, and the specimens are paragraphs or
passages of paragraphs joined by "\\n". The rule that derives non-overlapping texts, per
language id:

1. masthead_full and masthead_partial are dropped: they are glyph inventories ("AaLl"), letters
   collected one at a time from the text, not text. `note` is a comment, not sample text.
2. Every other field is split into lines at "\\n" (paragraph boundaries: the extractor joins
   paragraphs with "\\n"), and each line is stripped of surrounding whitespace; empty lines go.
3. A line that is a substring of another line of the same language is dropped, and repeated
   lines are kept once. What is left are whole paragraphs, plus the phrases whose paragraph is
   not among the lines; no text of a language contains another.
4. A text that occurs under more than one language id (e.g. ar_Arab and arb_Arab share Article
   1) is dropped from all of them: its label would be ambiguous. The three ids whose only text
   is such a shared one (aii_Syrc, arb_Arab, syc_Syrc) drop out of the corpus.

Texts keep the exact code points gflanguages ships (no Unicode normalisation).

Splits hold out text, not languages. A text goes to "test" when the first 8 bytes of the SHA-256
of its UTF-8 encoding, read as a big-endian integer, are 0 modulo 10, to "validation" when 1,
otherwise to "train" (80/10/10; texts are unique across the corpus, so the text alone decides).
A language none of whose texts landed in train gets its text with the smallest digest moved to
train, so every language appears in train and validation/test hold other texts of those
languages. Languages with a single text (354, mostly Article 1 only) are therefore train-only.

`python -m noembed.data.udhr` prints the counts per split.
"""

import collections
import functools
import hashlib
import sys

import gflanguages

SPLITS = ("train", "validation", "test")
LABEL_FIELDS = ("language", "script")

# The sample_text fields that hold running text (masthead_* are glyph lists; note is a comment).
TEXT_FIELDS = ("styles", "tester", "poster_sm", "poster_md", "poster_lg", "specimen_48",
               "specimen_36", "specimen_32", "specimen_21", "specimen_16")


def language_texts(sample_text) -> list[str]:
  """Non-overlapping texts of one gflanguages SampleTextProto, sorted (rules 1-3 above)."""
  lines = set()
  for field in TEXT_FIELDS:
    for line in getattr(sample_text, field).split("\n"):
      line = line.strip()
      if line:
        lines.add(line)
  return sorted(line for line in lines
                if not any(line != other and line in other for other in lines))


def _digest(text: str) -> bytes:
  return hashlib.sha256(text.encode("utf-8")).digest()


def _hash_split(text: str) -> str:
  bucket = int.from_bytes(_digest(text)[:8], "big") % 10
  return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


@functools.cache
def _all_examples() -> dict[str, tuple[dict[str, str], ...]]:
  """Every split's examples, sorted by (language, text); built once per process."""
  owners = collections.defaultdict(set)
  texts_by_language = {}
  scripts = {}
  for language_id, language in gflanguages.LoadLanguages().items():
    if not language.HasField("sample_text"):
      continue
    texts_by_language[language_id] = language_texts(language.sample_text)
    scripts[language_id] = language.script
    for text in texts_by_language[language_id]:
      owners[text].add(language_id)

  splits = {split: [] for split in SPLITS}
  for language_id in sorted(texts_by_language):
    texts = [text for text in texts_by_language[language_id] if len(owners[text]) == 1]
    if not texts:
      continue
    assigned = {text: _hash_split(text) for text in texts}
    if "train" not in assigned.values():
      assigned[min(texts, key=_digest)] = "train"
    for text in texts:
      splits[assigned[text]].append(
          {"text": text, "language": language_id, "script": scripts[language_id]})
  return {split: tuple(examples) for split, examples in splits.items()}


def check_split(split: str) -> str:
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
  return split


def load_examples(split: str) -> list[dict[str, str]]:
  """The split's examples: dicts with text, language (gflanguages id, "en_Latn"), script."""
  return [dict(example) for example in _all_examples()[check_split(split)]]


def load_texts(split: str) -> list[str]:
  """The split's texts, in the order of `load_examples(split)`."""
  return [example["text"] for example in _all_examples()[check_split(split)]]


def label_names(field: str) -> list[str]:
  """Sorted label vocabulary of `field` ("language" or "script"): every value in the corpus."""
  if field not in LABEL_FIELDS:
    raise ValueError(f"unknown label field {field!r}; expected one of {', '.join(LABEL_FIELDS)}")
  return sorted({example[field] for examples in _all_examples().values() for example in examples})


def split_counts(split: str) -> dict[str, int]:
  """languages, scripts, texts and UTF-8 bytes of one split."""
  examples = _all_examples()[check_split(split)]
  return {
      "languages": len({example["language"] for example in examples}),
      "scripts": len({example["script"] for example in examples}),
      "texts": len(examples),
      "bytes": sum(len(example["text"].encode("utf-8")) for example in examples),
  }


def main() -> None:
  print(f"UDHR excerpts from gflanguages {gflanguages.__version__}")
  print(f"{'split':<12}{'languages':>10}{'scripts':>9}{'texts':>8}{'bytes':>10}")
  for split in SPLITS:
    counts = split_counts(split)
    print(f"{split:<12}{counts['languages']:>10}{counts['scripts']:>9}{counts['texts']:>8}"
          f"{counts['bytes']:>10}")
  print(f"label vocabularies: {len(label_names('language'))} languages, "
        f"{len(label_names('script'))} scripts")


if __name__ == "__main__":
  sys.exit(main())
