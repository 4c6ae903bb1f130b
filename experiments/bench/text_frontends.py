"""Throughput of the host text front ends on the bundled corpus, on one CPU core.

For each front end: texts/s and characters/s (median of --repeats timed calls after one
warm-up call over the same texts), beside a reference implementation where one exists:
transformers' ByT5Tokenizer and CanineTokenizer (padded numpy output, as ours), sentencepiece's
own batch encode (ragged lists, no padding) for the subword baseline, and the per-token Python
loop experiments.bench.projection_loop.project_loop for projection. Rendering has no
reference; it is timed on short lines (each text's first --line-chars characters) and reported
in lines/s. A front end whose module is missing is skipped with a note.

  python -m experiments.bench.text_frontends [--out PATH] [--repeats N] [--max-texts N]

Prints a table and writes JSON (default experiments/bench/results/text_frontends.json).
Times are for comparison on one machine, not asserted anywhere.
"""

import argparse
import importlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from noembed.data import udhr
from noembed.text import bytes as byte_text
from noembed.text import codepoints

DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "results", "text_frontends.json")


def pin_to_one_core() -> str:
  """Restricts this process to one CPU core where the OS allows it; says which."""
  if hasattr(os, "sched_setaffinity"):
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"core {core}"
  return "not pinned (no sched_setaffinity)"


def median_seconds(run: Callable[[], object], repeats: int) -> float:
  run()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _optional(module: str):
  try:
    return importlib.import_module(module)
  except ImportError as error:
    print(f"note: skipping what needs {module}: {error}")
    return None


def cases(texts: list[str], line_chars: int):
  """(name, unit, inputs, run, reference name, reference run) for each available front end."""
  transformers = _optional("transformers")
  byt5 = transformers.ByT5Tokenizer() if transformers else None
  canine = transformers.CanineTokenizer() if transformers else None

  yield ("bytes (max_length=1024)", "texts", texts,
         lambda: byte_text.encode(texts, 1024),
         "transformers ByT5Tokenizer",
         byt5 and (lambda: byt5(texts, max_length=1024, truncation=True, padding="max_length",
                                return_tensors="np")))
  yield ("codepoints (max_length=2048)", "texts", texts,
         lambda: codepoints.encode(texts, 2048),
         "transformers CanineTokenizer",
         canine and (lambda: canine(texts, max_length=2048, truncation=True,
                                    padding="max_length", return_tensors="np")))

  subword_entry = _optional("noembed.inputs.subword")
  if subword_entry:
    model = subword_entry.load_model(subword_entry.default_config())
    yield (f"subword {model.model_type} {model.vocab_size} (max_length=256)", "texts", texts,
           lambda: model.encode(texts, 256),
           "sentencepiece encode (ragged lists)",
           lambda: model.processor.encode(texts, num_threads=1))

  projection = _optional("noembed.text.projection")
  if projection:
    loop = _optional("experiments.bench.projection_loop")
    yield ("projection (feature_size=512, max_tokens=128)", "texts", texts,
           lambda: projection.project(texts, feature_size=512, max_tokens=128),
           "per-token Python loop (projection_loop)",
           loop and (lambda: loop.project_loop(texts, feature_size=512, max_tokens=128)))

  render = _optional("noembed.text.render")
  if render:
    lines = [text[:line_chars] for text in texts]
    yield (f"render (lines of <= {line_chars} chars)", "lines", lines,
           lambda: render.render(lines), None, None)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=DEFAULT_OUT, help="where to write the JSON results")
  parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
  parser.add_argument("--max-texts", type=int, default=0,
                      help="use the first N texts of the corpus (0 = all splits, all texts)")
  parser.add_argument("--line-chars", type=int, default=48, help="length of rendered lines")
  args = parser.parse_args()

  pinned = pin_to_one_core()
  texts = [text for split in udhr.SPLITS for text in udhr.load_texts(split)]
  if args.max_texts:
    texts = texts[:args.max_texts]
  rows = []
  for name, unit, inputs, run, reference, reference_run in cases(texts, args.line_chars):
    characters = sum(len(text) for text in inputs)
    seconds = median_seconds(run, args.repeats)
    row = {"front_end": name, "unit": unit, "count": len(inputs), "characters": characters,
           "seconds": seconds, "per_second": len(inputs) / seconds,
           "characters_per_second": characters / seconds, "reference": reference}
    if reference_run:
      reference_seconds = median_seconds(reference_run, args.repeats)
      row.update(reference_seconds=reference_seconds,
                 reference_per_second=len(inputs) / reference_seconds,
                 reference_characters_per_second=characters / reference_seconds,
                 speedup=reference_seconds / seconds)
    rows.append(row)
    print(f"measured {name}", flush=True)

  header = (f"{'front end':<48}{'rate':>16}{'chars/s':>13}   {'reference':<40}"
            f"{'rate':>16}{'chars/s':>13}{'speedup':>9}")
  print(header)
  print("-" * len(header))
  for row in rows:
    unit = f"{row['unit']}/s"
    line = (f"{row['front_end']:<48}{row['per_second']:>8,.0f} {unit:<7}"
            f"{row['characters_per_second']:>13,.0f}   ")
    if "reference_seconds" in row:
      line += (f"{row['reference']:<40}{row['reference_per_second']:>8,.0f} {unit:<7}"
               f"{row['reference_characters_per_second']:>13,.0f}{row['speedup']:>8.1f}x")
    else:
      line += "(none)"
    print(line)

  results = {"corpus": "noembed.data.udhr, all splits", "texts": len(texts),
             "repeats": args.repeats, "cpu": pinned, "python": platform.python_version(),
             "numpy": np.__version__, "rows": rows}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as out_file:
    json.dump(results, out_file, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
