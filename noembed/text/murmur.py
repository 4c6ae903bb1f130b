"""seq_flow_lite's 64-bit MurmurHash variant, vectorised over many tokens with numpy uint64.

Reference: tensorflow/models, research/seq_flow_lite/tf_ops/projection_util.{h,cc} (the
`MurmurHash` hash engine behind `Hasher`, used by `sequence_string_projection`). A token's UTF-8
bytes are read as 8-byte little-endian words, each mixed in with a MurmurHash64A step; a 1-7
byte tail is xored in; the result is a pair (low, high) of uint64. `GetMoreBits` derives the
next pair from the previous one, one pair per 64 features.

The bytes are loaded as `char`, which is signed on x86-64: `(val << 8) | buf[i]` sign-extends a
byte >= 0x80 over all the bits above it. That is reproduced here exactly (see `_load_words`).
"""

import numpy as np

MUL = np.uint64(0xC6A4A7935BD1E995)
MUL2 = np.uint64(0x9E3779B97F4A7835)
_MASK64 = (1 << 64) - 1
# The bits a negative (sign-extended) byte at index k of a word overwrites with ones; a negative
# top byte (k = 7) is shifted out entirely.
_SIGN_FILL = np.array([(_MASK64 << (8 * (k + 1))) & _MASK64 for k in range(8)], np.uint64)
# Below this many tokens still hashing, a long token's chain runs in plain Python ints.
_SCALAR_TOKENS = 8
_SCALAR_MIN_STEPS = 8


def _shift_mix(value):
  return value ^ (value >> np.uint64(47))


def _load_words(byte_rows: np.ndarray) -> np.ndarray:
  """uint8 [N, 8] zero-padded chunks -> uint64 [N] as Load64VariableLength reads them."""
  words = np.ascontiguousarray(byte_rows).view("<u8").reshape(-1).astype(np.uint64)
  negative = byte_rows >= 0x80
  first_negative = negative.argmax(axis=1)
  fill = np.where(negative.any(axis=1), _SIGN_FILL[first_negative], np.uint64(0))
  return words | fill


def _chain_scalar(mix_values: list[int], hash1: int, hash2: int) -> tuple[int, int]:
  mul = int(MUL)
  for value in mix_values:
    hash1 = ((hash1 ^ value) * mul) & _MASK64
    hash2 ^= hash1
  return hash1, hash2


def murmur128(tokens: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
  """(low, high) uint64 [N]: seq_flow_lite's MurmurHash128 of each byte string."""
  count = len(tokens)
  lengths = np.fromiter(map(len, tokens), np.int64, count)
  num_chunks = (lengths + 7) // 8
  # Tokens sorted by chunk count, longest first: at chunk step c the tokens still hashing are a
  # prefix of this order.
  order = np.argsort(-num_chunks, kind="stable")
  sorted_lengths = lengths[order]
  sorted_chunks = num_chunks[order]
  chunk_start = np.concatenate([[0], np.cumsum(sorted_chunks)])
  total_chunks = int(chunk_start[-1])

  joined = np.frombuffer(b"".join(map(tokens.__getitem__, order.tolist())), np.uint8)
  padded = np.zeros(total_chunks * 8, np.uint8)
  byte_start = np.concatenate([[0], np.cumsum(sorted_lengths)])
  owner = np.repeat(np.arange(count), sorted_lengths)
  padded[chunk_start[owner] * 8 + (np.arange(joined.size) - byte_start[owner])] = joined
  data = _load_words(padded.reshape(-1, 8))

  # A full chunk is mixed through ShiftMix(data * kMul) * kMul before the xor, the tail is xored
  # in as it is; both are then multiplied by kMul.
  chunk_owner = np.repeat(np.arange(count), sorted_chunks)
  chunk_index = np.arange(total_chunks) - chunk_start[chunk_owner]
  is_full = chunk_index < (sorted_lengths // 8)[chunk_owner]
  mix = np.where(is_full, _shift_mix(data * MUL) * MUL, data)

  hash1 = sorted_lengths.astype(np.uint64) * MUL
  hash2 = np.zeros(count, np.uint64)
  max_chunks = int(sorted_chunks[0]) if count else 0
  active_per_step = np.searchsorted(-sorted_chunks, -np.arange(max_chunks), side="left")
  for step in range(max_chunks):
    active = int(active_per_step[step])
    if active <= _SCALAR_TOKENS and max_chunks - step >= _SCALAR_MIN_STEPS:
      for token in range(active):
        values = mix[chunk_start[token] + step:chunk_start[token + 1]].tolist()
        low, high = _chain_scalar(values, int(hash1[token]), int(hash2[token]))
        hash1[token], hash2[token] = np.uint64(low), np.uint64(high)
      break
    hash1[:active] = (hash1[:active] ^ mix[chunk_start[:active] + step]) * MUL
    hash2[:active] ^= hash1[:active]

  hash1 = _shift_mix(hash1) * MUL
  hash2 ^= hash1
  hash1 = _shift_mix(hash1)
  hash2 = _shift_mix(hash2 * MUL2) * MUL2
  low = np.empty(count, np.uint64)
  high = np.empty(count, np.uint64)
  low[order] = hash1
  high[order] = hash2
  return low, high


def more_bits(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """GetMoreBits: the next (low, high) pair, for the next 64 features."""
  mixed = _shift_mix(low) * MUL
  return _shift_mix((high ^ mixed) * MUL2) * MUL2, _shift_mix(mixed)


def hash_codes(tokens: list[bytes], feature_size: int) -> np.ndarray:
  """uint64 [N, 2 * ceil(feature_size / 64)]: Hasher::GetHashCodes of each token, in order.

  Unlike `Hasher::GetHashCodes`, an empty token is hashed as it is; the caller substitutes the
  op's "<null>" for empty words.
  """
  num_pairs = -(-feature_size // 64)
  codes = np.empty((len(tokens), 2 * num_pairs), np.uint64)
  low, high = murmur128(tokens)
  for pair in range(num_pairs):
    if pair:
      low, high = more_bits(low, high)
    codes[:, 2 * pair] = low
    codes[:, 2 * pair + 1] = high
  return codes
