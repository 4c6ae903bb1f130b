"""Parameter count and forward time of every embedder at one shared config.

  python -m experiments.bench.embedders [--batch 8 --characters 2048 --d_model 256]

Texts: the bundled corpus's train split packed into strings of exactly --characters code points
(the same text for every method). Each method's length limit is set to its longest text's units, so nothing is truncated and
no method pays for extra padding.
Times: jitted forward (deterministic), median of --repeats after --warmup, on the CPU. Prints a
table and writes JSON (--output). Not a test: asserts nothing about time.
"""

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

from noembed import inputs  # pylint: disable=g-import-not-at-top,wrong-import-position
from noembed.data import udhr  # pylint: disable=g-import-not-at-top,wrong-import-position

# Per method: the config key that bounds its units, and a generous bound for --characters.
LENGTH_KEYS = {"byte": "max_length", "gbst": "max_length", "canine_hash": "max_length",
               "subword": "max_length", "projection": "max_tokens", "visual": "max_slices"}


def corpus_texts(batch: int, characters: int) -> list[str]:
  stream = "\n".join(udhr.load_texts("train"))
  return [stream[i * characters:(i + 1) * characters] for i in range(batch)]


def unit_bound(name: str, texts: list[str], config) -> int:
  """Enough units for the longest text (so the comparison truncates nothing)."""
  if name in ("byte", "gbst"):
    return max(len(text.encode("utf-8")) for text in texts) + 1
  if name == "canine_hash":
    return max(len(text) for text in texts) + 2
  if name == "projection":
    return max(len(text.split(" ")) for text in texts) + 2
  if name == "subword":
    return max(len(text.encode("utf-8")) for text in texts) + 1
  # Rendered: ~ font_size/2 px per character in the worst case, slices every `stride` px.
  return math.ceil(max(len(text) for text in texts) * config.font_size / config.stride) + 2


def measure(name: str, texts: list[str], d_model: int, warmup: int, repeats: int) -> dict:
  method = inputs.get(name)
  config = method.default_config()
  config[LENGTH_KEYS[name]] = unit_bound(name, texts, config)
  real_units = int(method.encode(texts, config, None)["mask"].sum(1).max())
  config[LENGTH_KEYS[name]] = real_units  # tight: the longest text fills the buffer exactly
  batch = method.encode(texts, config, None)
  embedder = method.build_embedder(config, d_model=d_model, dtype=jnp.float32,
                                   param_dtype=jnp.float32)
  variables = embedder.init(jax.random.PRNGKey(0), batch, deterministic=True)
  params = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(
      variables.get("params", {})))
  forward = jax.jit(lambda v, b: embedder.apply(v, b, deterministic=True).x)
  for _ in range(warmup):
    out = jax.block_until_ready(forward(variables, batch))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(forward(variables, batch))
    times.append(time.perf_counter() - start)
  return {"embedder": name, "parameters": params, "input_units": int(batch["mask"].shape[1]),
          "real_units_max": real_units, "output_length": int(out.shape[1]),
          "forward_ms_median": 1000 * statistics.median(times),
          "forward_ms_min": 1000 * min(times)}


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--characters", type=int, default=2048)
  parser.add_argument("--d_model", type=int, default=256)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--methods", nargs="+", default=list(LENGTH_KEYS))
  parser.add_argument("--output", default="experiments/bench/results/embedders.json")
  args = parser.parse_args()
  texts = corpus_texts(args.batch, args.characters)
  rows = [measure(name, texts, args.d_model, args.warmup, args.repeats) for name in args.methods]
  print(f"B={args.batch}, {args.characters} characters, D={args.d_model}, "
        f"{jax.devices()[0].platform}")
  print(f"{'embedder':<12}{'parameters':>12}{'input len':>10}{'output len':>11}"
        f"{'forward ms (median)':>21}")
  for row in rows:
    print(f"{row['embedder']:<12}{row['parameters']:>12,}{row['input_units']:>10}"
          f"{row['output_length']:>11}{row['forward_ms_median']:>21.1f}")
  Path(args.output).parent.mkdir(parents=True, exist_ok=True)
  Path(args.output).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
  main()
