"""VTR front end: render each text as one grayscale line and slice it into fixed-width windows.

Paper: Salesky, Etter & Post 2021, "Robust Open-Vocabulary Translation from Visual Text
Representations". Reference: esalesky/visrep, fairseq/data/visual/image_generator.py
(TextImageGenerator), whose defaults are kept: 8 pt at 120 dpi, 3 px padding on every side,
window 30 px, stride 20 px, and a line height of the ink height of "a..zA..Z." plus both pads
(21 px for 8 pt NotoSans). Pixels are uint8 with 255 the white background and the text dark
(visrep: black on white, grey = 0.299 R + 0.587 G + 0.114 B).

Geometry: the line is `pad + text advance + pad` wide, at least one window, then widened to
`window + (n - 1) * stride` with the smallest n, so the n windows (overlapping when
stride < window) tile it exactly. visrep's rounding
(`w += window - (w - stride) % window` unless w % window == 0) does not always tile: at 30/20 a
60 px line keeps 2 slices and loses its last 10 px, and a 50 px one gets 3 with 10 px to spare.

Where this differs from visrep, on purpose: text is shaped and reordered (libraqm) with a face per
script (noembed.text.fonts) where pygame draws one font unshaped; the baseline sits at a fixed
`pad + ascent of the reference string`, where visrep puts the top of each line's own ink at pad
(so its baseline moves with the letters in the line); raw text is rendered (visrep first undoes
sentencepiece: drops spaces, maps "▁" to space); width counts advances, not pygame's ink box.

Words are drawn one at a time and cached (a word's pixels do not depend on where it sits), so
kerning across a space is not applied. Bidi runs at word granularity: the paragraph direction
comes from its first strong character and words get embedding levels and visual order by the
Unicode bidi rules (W7, N1, N2, I1, I2, L1, L2); inside a word libraqm shapes and reorders.
"""

import concurrent.futures
import dataclasses
import functools
import math
import multiprocessing
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from noembed.text import fonts as fonts_lib
from noembed.text.common import TruncationStats, check_positive, check_texts

REFERENCE_TEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ."
BACKGROUND = 255

# Control characters: line and tab breaks become spaces, the rest (NUL included) are dropped.
_CONTROLS = {cp: None for cp in (*range(0x00, 0x20), *range(0x7f, 0xa0))}
_CONTROLS.update({cp: " " for cp in (0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x85, 0x2028, 0x2029)})
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_TOKEN = re.compile(r"\s+|\S+")
# Longer whitespace-free stretches (CJK, Thai, URLs) are drawn in pieces of about this many
# characters, cut where no mark or joiner follows.
_PIECE = 48
# Past this many characters the truncated rest is not measured: its width is extrapolated from
# the mean advance of the measured characters.
_MEASURE_LIMIT = 100_000


@dataclasses.dataclass
class GlyphCoverage:
  """Counts characters drawn and those no font covers (drawn as .notdef boxes); accumulates."""

  characters: int = 0
  uncovered: int = 0
  uncovered_codepoints: Counter = dataclasses.field(default_factory=Counter)

  def merge(self, other: "GlyphCoverage") -> None:
    self.characters += other.characters
    self.uncovered += other.uncovered
    self.uncovered_codepoints.update(other.uncovered_codepoints)


@dataclasses.dataclass(frozen=True)
class _Spec:
  ppem: float
  height: int
  window: int
  stride: int
  max_slices: int
  pad: int
  font_dir: str
  fonts: tuple[str, ...]


def num_slices(width: int, window: int, stride: int) -> int:
  """Windows tiling a `width`-pixel line: the smallest n with window + (n - 1) * stride >= width."""
  return 1 + max(0, math.ceil((width - window) / stride))


def line_height(font_size: float = 8, pad: int = 3, dpi: int = 120, font_dir: str = "",
                fonts: Sequence[str] = fonts_lib.PREFERRED_FONTS) -> int:
  """visrep's image height: ink height of REFERENCE_TEXT in the primary face plus both pads."""
  font = fonts_lib.image_font(fonts_lib.font_set(font_dir, tuple(fonts)).faces[0],
                              font_size * dpi / 72)
  _, top, _, bottom = font.getbbox(REFERENCE_TEXT, anchor="ls")
  return bottom - top + 2 * pad


@functools.lru_cache(maxsize=1 << 18)
def _advance(face: fonts_lib.FontFace, ppem: float, text: str, direction: str) -> float:
  font = fonts_lib.image_font(face, ppem)
  scale = ppem / fonts_lib.BITMAP_STRIKE_PPEM if face.bitmap else 1.0
  return font.getlength(text, direction=direction) * scale


@functools.lru_cache(maxsize=1 << 16)
def _ink(face: fonts_lib.FontFace, ppem: float, text: str, direction: str):
  """(darkness uint8 [h, w], dx, dy) of a drawn word, its top-left relative to the pen origin."""
  font = fonts_lib.image_font(face, ppem)
  if face.bitmap:
    return _emoji_ink(font, ppem, text, direction)
  # One shaping pass: draw on a canvas sized from the advance, with room for overhangs, then
  # crop to the ink.
  margin = math.ceil(2 * ppem)
  width = math.ceil(_advance(face, ppem, text, direction)) + 2 * margin
  image = Image.new("L", (width, 2 * margin), 0)
  ImageDraw.Draw(image).text((margin, margin), text, font=font, fill=255, anchor="ls",
                             direction=direction)
  darkness = np.asarray(image)
  rows, columns = np.flatnonzero(darkness.any(1)), np.flatnonzero(darkness.any(0))
  if not rows.size:
    return None
  top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
  return darkness[top:bottom, left:right].copy(), int(left) - margin, int(top) - margin


def _emoji_ink(font, ppem: float, text: str, direction: str):
  """Colour emoji: the 109 ppem strike drawn on white, to grey, scaled to the line's size."""
  left, top, right, bottom = font.getbbox(text, anchor="ls", direction=direction)
  if right <= left or bottom <= top:
    return None
  image = Image.new("RGB", (right - left, bottom - top), (255, 255, 255))
  ImageDraw.Draw(image).text((-left, -top), text, font=font, anchor="ls", direction=direction,
                             embedded_color=True)
  scale = ppem / fonts_lib.BITMAP_STRIKE_PPEM
  size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
  darkness = 255 - np.asarray(image.convert("L").resize(size, Image.Resampling.BOX))
  return darkness.astype(np.uint8), round(left * scale), round(top * scale)


@functools.lru_cache(maxsize=1 << 16)
def _bidi_kind(text: str) -> str:
  """'L' or 'R' (first strong character), 'N' for numbers, 'O' for other neutrals."""
  number = False
  for char in text:
    bidi_class = unicodedata.bidirectional(char)
    if bidi_class == "L":
      return "L"
    if bidi_class in ("R", "AL"):
      return "R"
    number = number or bidi_class in ("EN", "AN")
  return "N" if number else "O"


def _levels(kinds: Sequence[str], spaces: Sequence[bool], rtl: bool) -> list[int]:
  """Embedding levels of words from their bidi kinds (word-granular UBA W7, N1, N2, I1, I2, L1)."""
  base = 1 if rtl else 0
  strong = []
  previous = "R" if rtl else "L"
  for kind in kinds:  # W7: numbers after L are L; other numbers act as R for N1 and sit at 2.
    if kind == "N" and previous == "L":
      kind = "L"
    if kind in ("L", "R"):
      previous = kind
    strong.append(kind)
  resolved = list(strong)
  position = 0
  while position < len(resolved):  # N1/N2 over each stretch of neutrals.
    if resolved[position] != "O":
      position += 1
      continue
    end = position
    while end < len(resolved) and resolved[end] == "O":
      end += 1
    before = "R" if position == 0 and rtl else ("L" if position == 0 else resolved[position - 1])
    after = ("R" if rtl else "L") if end == len(resolved) else resolved[end]
    before, after = ("R" if k == "N" else k for k in (before, after))
    direction = before if before == after else ("R" if rtl else "L")
    resolved[position:end] = [direction] * (end - position)
    position = end
  levels = [{"L": 2 * base, "R": 1, "N": 2}[kind] for kind in resolved]
  for position in range(len(levels) - 1, -1, -1):  # L1: trailing whitespace to the base level.
    if not spaces[position]:
      break
    levels[position] = base
  return levels


def _visual_order(levels: Sequence[int]) -> list[int]:
  """L2: from the highest level down to the lowest odd one, reverse runs at that level or above."""
  order = list(range(len(levels)))
  if not levels:
    return order
  lowest_odd = min((level for level in levels if level % 2), default=max(levels) + 1)
  for level in range(max(levels), lowest_odd - 1, -1):
    position = 0
    while position < len(order):
      if levels[order[position]] < level:
        position += 1
        continue
      end = position
      while end < len(order) and levels[order[end]] >= level:
        end += 1
      order[position:end] = order[position:end][::-1]
      position = end
  return order


def _clean(text: str) -> str:
  return _LONE_SURROGATE.sub("\ufffd", text).translate(_CONTROLS)


def _pieces(word: str):
  """Cuts a long whitespace-free token into pieces, not before a mark or after a joiner (unless
  a piece would pass twice its length)."""
  start = 0
  while start < len(word):
    end = min(start + _PIECE, len(word))
    longest = min(start + 2 * _PIECE, len(word))  # a flood of marks is cut anyway
    while end < longest and (unicodedata.category(word[end])[0] == "M"
                               or unicodedata.category(word[end]) == "Cf"
                               or word[end - 1] == "\u200d"):
      end += 1
    yield word[start:end]
    start = end


def _units(text: str, font_set: fonts_lib.FontSet):
  """Yields (face index, text, is_space, uncovered code points) in logical order.

  Whitespace takes the face of the text before it, unless that is a bitmap (emoji) face or lacks
  the space: then the primary face.
  """
  face = 0
  for match in _TOKEN.finditer(text):
    token = match.group()
    if token[0].isspace():
      if font_set.faces[face].bitmap or not all(font_set.covers(face, c) for c in token):
        face = 0
      yield face, token, True, ()
      continue
    for piece in _pieces(token) if len(token) > _PIECE else (token,):
      runs, uncovered = font_set.runs(piece)
      for number, (face, run) in enumerate(runs):
        yield face, run, False, uncovered if number == 0 else ()


def _render_line(text: str, spec: _Spec, font_set: fonts_lib.FontSet,
                 stats: TruncationStats | None, coverage: GlyphCoverage | None) -> np.ndarray:
  """One text -> its line image, uint8 [height, window + (n - 1) * stride]."""
  text = _clean(text)
  limit = spec.window + (spec.max_slices - 1) * spec.stride - 2 * spec.pad
  kept = []  # (face, text, is_space, advance, uncovered, bidi kind), logical order
  total_advance, consumed, truncated = 0.0, 0, False
  for face_index, run, is_space, uncovered in _units(text, font_set):
    if truncated and consumed >= _MEASURE_LIMIT:
      break
    face = font_set.faces[face_index]
    kind = "O" if is_space else _bidi_kind(run)
    advance = _advance(face, spec.ppem, run, "rtl" if kind == "R" else "ltr")
    if not truncated:
      kept.append((face, run, is_space, advance, uncovered, kind))
      truncated = total_advance + advance > limit
    total_advance += advance
    consumed += len(run)
  if consumed < len(text):
    total_advance += (len(text) - consumed) * total_advance / consumed
  rtl = next((unit[5] == "R" for unit in kept if unit[5] in ("L", "R")), False)
  levels = _levels([unit[5] for unit in kept], [unit[2] for unit in kept], rtl)
  if truncated and len(kept) > 1 and any(level % 2 for level in levels):
    # The unit crossing the limit is kept whole and cropped with the line where it ends the
    # line visually; with right-to-left parts it may not, and cropping would cut another unit.
    kept.pop()
    levels = _levels([unit[5] for unit in kept], [unit[2] for unit in kept], rtl)
  content = math.ceil(sum(unit[3] for unit in kept)) + 2 * spec.pad
  slices = min(num_slices(content, spec.window, spec.stride), spec.max_slices)
  if stats is not None:
    total = num_slices(math.ceil(total_advance) + 2 * spec.pad, spec.window, spec.stride)
    stats.record(slices, max(total, slices))
  if coverage is not None:
    for _, run, is_space, _, uncovered, _ in kept:
      if not is_space:
        coverage.characters += sum(map(fonts_lib.needs_glyph, run))
        coverage.uncovered += len(uncovered)
        coverage.uncovered_codepoints.update(uncovered)
  darkness = np.zeros((spec.height, spec.window + (slices - 1) * spec.stride), np.uint8)
  baseline = spec.pad + _ascent(font_set, spec.ppem)
  pen = float(spec.pad)
  for index in _visual_order(levels):
    face, run, is_space, advance, _, _ = kept[index]
    if not is_space:
      ink = _ink(face, spec.ppem, run, "rtl" if levels[index] % 2 else "ltr")
      if ink is not None:
        _blit(darkness, *ink, round(pen), baseline)
    pen += advance
  return BACKGROUND - darkness


def _blit(darkness: np.ndarray, ink: np.ndarray, dx: int, dy: int, x: int, y: int) -> None:
  top, left = y + dy, x + dx
  y0, x0 = max(top, 0), max(left, 0)
  y1 = min(top + ink.shape[0], darkness.shape[0])
  x1 = min(left + ink.shape[1], darkness.shape[1])
  if y1 > y0 and x1 > x0:
    region = darkness[y0:y1, x0:x1]
    np.maximum(region, ink[y0 - top:y1 - top, x0 - left:x1 - left], out=region)


@functools.lru_cache(maxsize=None)
def _ascent(font_set: fonts_lib.FontSet, ppem: float) -> int:
  """Baseline depth below the top pad: the reference string's ascent in the primary face."""
  return -fonts_lib.image_font(font_set.faces[0], ppem).getbbox(REFERENCE_TEXT, anchor="ls")[1]


def _render_batch(texts: Sequence[str], spec: _Spec):
  """Renders texts in this process: (real slices [sum n, H, W], n per text, stats, coverage)."""
  font_set = fonts_lib.font_set(spec.font_dir, spec.fonts)
  stats, coverage = TruncationStats(), GlyphCoverage()
  lines = [_render_line(text, spec, font_set, stats, coverage) for text in texts]
  windows = [np.lib.stride_tricks.sliding_window_view(line, spec.window, axis=1)[:, ::spec.stride]
             for line in lines]
  counts = np.array([part.shape[1] for part in windows], np.int64)
  slices = np.concatenate([part.transpose(1, 0, 2) for part in windows]) if windows else None
  return slices, counts, stats, coverage


@functools.lru_cache(maxsize=None)
def _pool(num_workers: int) -> concurrent.futures.ProcessPoolExecutor:
  # spawn: forking a process that may hold JAX or other threads is unsafe.
  return concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=multiprocessing.get_context("spawn"))


def render(texts: Sequence[str], font_size: float = 8, height: int | None = None,
           window: int = 30, stride: int = 20, max_slices: int = 256, *, pad: int = 3,
           dpi: int = 120, font_dir: str = "", fonts: Sequence[str] = fonts_lib.PREFERRED_FONTS,
           num_workers: int = 0, stats: TruncationStats | None = None,
           coverage: GlyphCoverage | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Renders texts to slices uint8 [B, max_slices, height, window] and a bool mask [B, max_slices].

  font_size: points at `dpi` (visrep: pygame at 120 dpi). height: None for visrep's formula
  (line_height). font_dir: "" for the system Noto directories; fonts: face preference list.
  num_workers: 0 renders here, else in that many spawned processes (same output). Lines wider
  than max_slices windows are cut and counted in `stats` (in slices); `coverage` counts
  characters no font covers. Padding slices are blank (255) with mask False; every text has at
  least one real slice.
  """
  texts = check_texts(texts)
  for name, value in (("window", window), ("stride", stride), ("max_slices", max_slices),
                      ("dpi", dpi)):
    check_positive(name, value)
  if stride > window:
    raise ValueError(f"stride must be at most window ({window}), got {stride}")
  if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
    raise ValueError(f"pad must be a non-negative int, got {pad!r}")
  if not font_size > 0:
    raise ValueError(f"font_size must be positive, got {font_size!r}")
  if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
    raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
  fonts = tuple(fonts)
  if height is None:
    height = line_height(font_size, pad, dpi, font_dir, fonts)
  check_positive("height", height)
  spec = _Spec(font_size * dpi / 72, height, window, stride, max_slices, pad, font_dir, fonts)
  if num_workers and len(texts) > 1:
    chunk = math.ceil(len(texts) / num_workers)
    parts = [texts[start:start + chunk] for start in range(0, len(texts), chunk)]
    results = list(_pool(num_workers).map(_render_batch, parts, [spec] * len(parts)))
  else:
    results = [_render_batch(texts, spec)]
  slices = np.full((len(texts), max_slices, height, window), BACKGROUND, np.uint8)
  mask = np.zeros((len(texts), max_slices), bool)
  row = 0
  for part_slices, counts, part_stats, part_coverage in results:
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for count, offset in zip(counts, offsets):
      slices[row, :count] = part_slices[offset:offset + count]
      mask[row, :count] = True
      row += 1
    if stats is not None:
      stats.texts += part_stats.texts
      stats.truncated_texts += part_stats.truncated_texts
      stats.dropped_units += part_stats.dropped_units
    if coverage is not None:
      coverage.merge(part_coverage)
  return slices, mask
