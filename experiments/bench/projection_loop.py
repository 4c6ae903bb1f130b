"""A plain per-token Python loop of seq_flow_lite's sequence_string_projection, and a benchmark.

`project_loop(texts, **options)` restates noembed.text.projection.project one token at a time,
the way tf_ops/sequence_string_projection.cc and tf_ops/projection_util.cc are written: split
the UTF-8 bytes, lower-case rune by rune, distort, hash every token with Python ints (no cache),
write each feature from its two bits. It shares no code with the vectorised front end except
the option checks and the documented deviations (surrogates, simple lowercase, the per-text
random streams), and serves as the tests' oracle and as the benchmark's baseline.

`python -m experiments.bench.projection_loop` times both on the bundled corpus (all splits of
noembed.data.udhr; the loop on an evenly spread sample), the front end with its per-process
word cache emptied before each run (cold) and kept (warm), prints a table and writes
projection_loop.json.
"""

import argparse
import json
import time

import numpy as np

from noembed.text import projection

_MASK64 = (1 << 64) - 1
_MUL = 0xC6A4A7935BD1E995
_MUL2 = 0x9E3779B97F4A7835
_TABLE = (0.0, 1.0, -1.0, 0.0)


def _shift_mix(value: int) -> int:
  return value ^ (value >> 47)


def _load64(data: bytes, start: int, length: int) -> int:
  value = 0
  for index in range(start + length - 1, start - 1, -1):
    byte = data[index] - 256 if data[index] >= 128 else data[index]   # signed char
    value = ((value << 8) | (byte & _MASK64)) & _MASK64
  return value


def _murmur128(data: bytes) -> tuple[int, int]:
  hash1 = (len(data) * _MUL) & _MASK64
  hash2 = 0
  aligned = len(data) & ~7
  for start in range(0, aligned, 8):
    mixed = (_shift_mix((_load64(data, start, 8) * _MUL) & _MASK64) * _MUL) & _MASK64
    hash1 = ((hash1 ^ mixed) * _MUL) & _MASK64
    hash2 ^= hash1
  if len(data) & 7:
    hash1 = ((hash1 ^ _load64(data, aligned, len(data) & 7)) * _MUL) & _MASK64
    hash2 ^= hash1
  hash1 = (_shift_mix(hash1) * _MUL) & _MASK64
  hash2 ^= hash1
  hash1 = _shift_mix(hash1)
  hash2 = (_shift_mix((hash2 * _MUL2) & _MASK64) * _MUL2) & _MASK64
  return hash1, hash2


def hash_codes(word: bytes, feature_size: int) -> list[int]:
  """Hasher::GetHashCodes for one word ("<null>" for the empty word)."""
  low, high = _murmur128(word or b"<null>")
  codes = []
  for start in range(0, feature_size, 64):
    if start:
      mixed = (_shift_mix(low) * _MUL) & _MASK64
      low = (_shift_mix(((high ^ mixed) * _MUL2) & _MASK64) * _MUL2) & _MASK64
      high = _shift_mix(mixed)
    codes += [low, high]
  return codes


def _split(data: bytes, by_space: bool, max_splits: int) -> list[bytes]:
  """SplitBySpaceInternal / SplitByCharInternal on UTF-8 bytes, max_splits as size_t."""
  limit = max_splits if max_splits >= 0 else (1 << 64) + max_splits
  tokens = []
  if not by_space:
    index = 0
    while index < len(data):
      lead = data[index]
      width = 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
      tokens.append(data[index:index + width])
      if tokens and len(tokens) == limit:
        break
      index += width
    return tokens
  start = 0
  while start < len(data) and data[start] == 0x20:
    start += 1
  end = data.find(b" ", start)
  while end != -1 and (limit == _MASK64 or len(tokens) < (limit - 1) & _MASK64):
    if end > start:
      tokens.append(data[start:end])
    start = end + 1
    end = data.find(b" ", start)
  stop = len(data) if end == -1 else end
  if stop > start:
    tokens.append(data[start:stop])
  return tokens


def _lower_case(token: str, vocabulary: set, lowercase: bool) -> tuple[str, bool, bool]:
  kept = []
  first_cap = all_caps = False
  for rune in token:
    if rune == "\ufffd":
      continue
    lower = "i" if rune == "\u0130" else rune.lower()
    if vocabulary and lower not in vocabulary:
      continue
    is_lower = lower == rune
    first_cap = (not is_lower) if not kept else first_cap and is_lower
    all_caps = (not is_lower) if not kept else all_caps and not is_lower
    kept.append(lower if lowercase else rune)
  return "".join(kept), first_cap, all_caps


def _distort(words: list[str], rng, probability: float) -> list[str]:
  """TextDistorter::DistortText word by word, on code points, with the front end's draws."""
  draws = [rng.random(len(words)).tolist(), rng.random(len(words)).tolist(),
           rng.integers(0, 2**32, len(words), dtype=np.int64).tolist(),
           rng.integers(0, 2**32, len(words), dtype=np.int64).tolist()]
  random_char = 0
  result = []
  for word, apply, kind, index, insert in zip(words, *draws):
    runes = [ord(rune) for rune in word]
    if apply < probability and runes:
      index %= len(runes)
      if kind < 0.33:
        random_char = runes[index]
        del runes[index]
      elif kind < 0.66:
        if len(runes) > 2:
          random_char = runes[index]
          del runes[index]
          runes.insert(insert % len(runes), random_char)
      elif random_char:
        runes.insert(index, random_char)
    result.append("".join(map(chr, runes)))
  return result


def project_loop(texts, feature_size=512, max_tokens=128, *, stats=None, **options):
  """(features [B, T, F] int8 or float32, mask [B, T]) like projection.project, token by token."""
  opts = projection.ProjectionOptions(feature_size=feature_size, max_tokens=max_tokens,
                                      **options)
  texts = list(texts)
  for index, text in enumerate(texts):
    if not isinstance(text, str):
      raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
  vocabulary = {rune for rune in projection.to_valid_unicode(opts.vocabulary)
                if rune != "\ufffd" and rune == ("i" if rune == "\u0130" else rune.lower())}
  features = np.zeros((len(texts), max_tokens, feature_size), np.float32)
  mask = np.zeros((len(texts), max_tokens), bool)
  room = max_tokens - opts.add_bos - opts.add_eos
  for text_index, text in enumerate(texts):
    data = projection.to_valid_unicode(text).encode("utf-8")
    tokens = _split(data, opts.split_on == "space", opts.max_splits)
    if stats is not None:
      stats.record(min(room, len(tokens)), len(tokens))
    rng = (np.random.default_rng([opts.distortion_seed, text_index]) if opts.needs_rng
           else None)
    kept = [_lower_case(token.decode("utf-8"), vocabulary, opts.lowercase)
            for token in tokens[:room]]
    words = [word for word, _, _ in kept]
    if opts.distortion_probability > 0.0:
      words = _distort(words, rng, opts.distortion_probability)
    entries = ([(projection.BOS_TOKEN, False, False)] * opts.add_bos
               + [(word, first, every) for word, (_, first, every) in zip(words, kept)]
               + [(projection.EOS_TOKEN, False, False)] * opts.add_eos)
    cap_draws = []
    for probability in (opts.add_first_cap_feature, opts.add_all_caps_feature):
      cap_draws.append(rng.random(len(entries)).tolist() if 0.0 < probability < 1.0
                       else [0.0] * len(entries))
    doc_size = (min(np.log2(np.float32(max(len(tokens), 1))) / np.float32(opts.doc_size_levels),
                    1.0) * 2 - 1 if opts.doc_size_levels else 0.0)
    counter = {}
    for position, (word, first_cap, all_caps) in enumerate(entries):
      codes = hash_codes(word.encode("utf-8"), feature_size)
      row = features[text_index, position]
      for feature in range(feature_size):
        row[feature] = _TABLE[(codes[feature // 32] >> (2 * (feature % 32))) & 3]
      if opts.word_novelty_bits:
        seen = counter.get(codes[0], 0)
        counter[codes[0]] = seen + 1
        row[-1] = min(np.float32(seen) * np.float32(1.0 / (1 << opts.word_novelty_bits)),
                      1.0) * 2 - 1
      if opts.doc_size_levels:
        row[-2] = doc_size
      for offset, flag, probability, draws in ((3, first_cap, opts.add_first_cap_feature,
                                                cap_draws[0]),
                                               (4, all_caps, opts.add_all_caps_feature,
                                                cap_draws[1])):
        if probability > 0.0:
          row[-offset] = (1.0 if flag else -1.0) if draws[position] <= probability else 0.0
      mask[text_index, position] = True
  return features.astype(np.int8 if opts.ternary else np.float32), mask


def _corpus() -> list[str]:
  from noembed.data import udhr
  return [text for split in udhr.SPLITS for text in udhr.load_texts(split)]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--feature_size", type=int, default=512)
  parser.add_argument("--max_tokens", type=int, default=128)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--loop_texts", type=int, default=256,
                      help="texts timed with the loop (it is slow), spread evenly over the "
                           "corpus; the vectorised path times all")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--output", default="projection_loop.json")
  args = parser.parse_args()
  texts = _corpus()
  options = dict(feature_size=args.feature_size, max_tokens=args.max_tokens)

  def tokens_per_second(function, subset, cold=False):
    """Median over `repeats` runs after one warm-up run, in real tokens per second.

    cold: empty the front end's per-process word cache before every run, so each run pays for
    hashing every distinct token once (a first pass over new text); otherwise the runs find
    the cache filled by the runs before (later epochs over the same text).
    """
    times = []
    for _ in range(args.repeats + 1):
      if cold:
        projection.clear_cache()
      count = 0
      start = time.perf_counter()
      for begin in range(0, len(subset), args.batch_size):
        _, mask = function(subset[begin:begin + args.batch_size], **options)
        count += int(mask.sum())
      times.append(time.perf_counter() - start)
    return count / float(np.median(times[1:])), count

  stride = max(1, len(texts) // args.loop_texts)
  loop_rate, loop_tokens = tokens_per_second(project_loop, texts[::stride][:args.loop_texts])
  rows = [("loop (pure Python)", loop_tokens, loop_rate)]
  for name, function in (("project", projection.project),
                         ("project_packed", projection.project_packed)):
    for cache, cold in (("cold", True), ("warm", False)):
      rate, count = tokens_per_second(function, texts, cold=cold)
      rows.append((f"{name} ({cache} cache)", count, rate))
  print(f"{'implementation':<28}{'tokens':>10}{'tokens/s':>14}{'speed-up':>10}")
  for name, count, rate in rows:
    print(f"{name:<28}{count:>10}{rate:>14.0f}{rate / loop_rate:>9.1f}x")
  with open(args.output, "w") as file:
    json.dump({"options": vars(args), "texts": len(texts),
               "tokens_per_second": {name: rate for name, _, rate in rows},
               "speedup": {name: rate / loop_rate for name, _, rate in rows[1:]}},
              file, indent=1)


if __name__ == "__main__":
  main()
