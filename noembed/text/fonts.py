"""Fonts for the VTR renderer: Noto faces per script chosen by cmap coverage, cached per process.

visrep (esalesky/visrep, fairseq/data/visual/image_generator.py) draws every line with one font
(NotoSans-Regular.ttf, or a language -> font map). Multilingual text needs a face per script, and
Unicode scripts are not in `unicodedata`, so a character goes to the first face of
PREFERRED_FONTS whose cmap covers it, then to any other regular face in the font directories
(sorted by file name). Marks, joiners and variation selectors stay with their base character;
punctuation, digits and symbols stay with the face of the text around them when it covers them.
Numpy/Pillow/fontTools only.
"""

import dataclasses
import functools
import os
import threading
import unicodedata
from collections.abc import Sequence

from fontTools import ttLib
from PIL import ImageFont, features

# Debian's fonts-noto-core, fonts-noto-cjk and fonts-noto-color-emoji install here.
DEFAULT_FONT_DIRS = ("/usr/share/fonts/truetype/noto", "/usr/share/fonts/opentype/noto")

# "file" or "file#face" (face index in a .ttc), in preference order; the first is the primary
# face: it sets the line metrics and draws the .notdef box for characters no face covers.
PREFERRED_FONTS = (
    "NotoSans-Regular.ttf",            # Latin, Greek, Cyrillic: visrep's font
    "NotoNaskhArabic-Regular.ttf",     # Arabic: visrep's own font map uses Naskh
    "NotoSansHebrew-Regular.ttf",
    "NotoSansDevanagari-Regular.ttf",
    "NotoSansBengali-Regular.ttf",
    "NotoSansGurmukhi-Regular.ttf",
    "NotoSansGujarati-Regular.ttf",
    "NotoSansOriya-Regular.ttf",
    "NotoSansTamil-Regular.ttf",
    "NotoSansTelugu-Regular.ttf",
    "NotoSansKannada-Regular.ttf",
    "NotoSansMalayalam-Regular.ttf",
    "NotoSansSinhala-Regular.ttf",
    "NotoSansThai-Regular.ttf",
    "NotoSansLao-Regular.ttf",
    "NotoSansKhmer-Regular.ttf",
    "NotoSansMyanmar-Regular.ttf",
    "NotoSerifTibetan-Regular.ttf",
    "NotoSansGeorgian-Regular.ttf",
    "NotoSansArmenian-Regular.ttf",
    "NotoSansEthiopic-Regular.ttf",
    "NotoSansThaana-Regular.ttf",
    "NotoSansSyriac-Regular.ttf",
    "NotoSansCJK-Regular.ttc#2",       # Han, kana, hangul; face 2 is Noto Sans CJK SC
    "NotoSansMath-Regular.ttf",
    "NotoSansSymbols-Regular.ttf",
    "NotoSansSymbols2-Regular.ttf",
    "NotoColorEmoji.ttf",
)
EMOJI_FONT = "NotoColorEmoji.ttf"
# Colour bitmap fonts have fixed strikes: NotoColorEmoji only loads at 109 pixels per em.
BITMAP_STRIKE_PPEM = 109

_PACKAGES = (("NotoSansCJK", "fonts-noto-cjk"), ("NotoColorEmoji", "fonts-noto-color-emoji"))
_VARIATION_SELECTOR_16 = "\ufe0f"
_KEYCAP = "\u20e3"


@dataclasses.dataclass(frozen=True)
class FontFace:
  """One face of a font file; `bitmap` for colour-bitmap (emoji) faces."""

  path: str
  index: int = 0
  bitmap: bool = False


def font_dirs(font_dir: str) -> tuple[str, ...]:
  """The directories searched: `font_dir`, or the system Noto directories when it is empty."""
  return (font_dir,) if font_dir else DEFAULT_FONT_DIRS


def find_face(name: str, dirs: Sequence[str]) -> FontFace:
  """The face `name` ("file" or "file#index") in the first directory that holds the file."""
  file_name, _, index = name.partition("#")
  for directory in dirs:
    path = os.path.join(directory, file_name)
    if os.path.isfile(path):
      return FontFace(path, int(index or 0), bitmap=file_name == EMOJI_FONT)
  package = next((pkg for prefix, pkg in _PACKAGES if file_name.startswith(prefix)),
                 "fonts-noto-core")
  raise FileNotFoundError(
      f"font {file_name!r} not found in {', '.join(dirs)}; install Debian's {package} or set "
      f"font_dir to a directory that has it")


@functools.lru_cache(maxsize=None)
def coverage(face: FontFace) -> frozenset[int]:
  """Code points the face's cmap maps to a glyph."""
  with ttLib.TTFont(face.path, fontNumber=face.index, lazy=True) as font:
    return frozenset(font.getBestCmap() or ())


@functools.lru_cache(maxsize=None)
def image_font(face: FontFace, ppem: float) -> ImageFont.FreeTypeFont:
  """Pillow font for `face` at `ppem` pixels per em (the strike size for bitmap faces)."""
  if not features.check("raqm"):
    raise RuntimeError("Pillow lacks libraqm, so it cannot shape or reorder text (Arabic, "
                       "Hebrew, Indic scripts); install a Pillow built with raqm")
  size = BITMAP_STRIKE_PPEM if face.bitmap else ppem
  return ImageFont.truetype(face.path, size=size, index=face.index,
                            layout_engine=ImageFont.Layout.RAQM)


def _inherits(char: str) -> bool:
  """Marks, format characters (ZWJ, ZWNJ, tags) and variation selectors join the previous face."""
  return unicodedata.category(char)[0] == "M" or unicodedata.category(char) == "Cf"


def _is_letter(char: str) -> bool:
  return unicodedata.category(char)[0] == "L"


def needs_glyph(char: str) -> bool:
  """Whether a missing glyph for `char` is a coverage failure (not whitespace or ignorable)."""
  return not (char.isspace() or unicodedata.category(char) in ("Cf", "Cc")
              or "\ufe00" <= char <= "\ufe0f" or "\U000e0100" <= char <= "\U000e01ef")


class FontSet:
  """The faces one renderer uses, with each character's face choice cached.

  faces[0] is the primary face. Faces outside the preference list are added to `faces` the
  first time a character needs one, so a face index, once given out, never changes.
  """

  def __init__(self, font_dir: str = "", preferred: Sequence[str] = PREFERRED_FONTS):
    if not preferred:
      raise ValueError("preferred must name at least one font, got an empty list")
    self.dirs = font_dirs(font_dir)
    self.faces = [find_face(name, self.dirs) for name in preferred]
    self._coverages = [coverage(face) for face in self.faces]
    self._fallbacks: list[FontFace] | None = None
    self._choice: dict[tuple[int, bool], int] = {}
    self._lock = threading.Lock()
    self.ascii_primary = all(cp in self._coverages[0] for cp in range(0x20, 0x7f))

  def covers(self, face_index: int, char: str) -> bool:
    return ord(char) in self._coverages[face_index]

  def _fallback_faces(self) -> list[FontFace]:
    if self._fallbacks is None:
      known = {face.path for face in self.faces}
      names = sorted({name for directory in self.dirs if os.path.isdir(directory)
                      for name in os.listdir(directory)
                      if name.endswith(("-Regular.ttf", "-Regular.otf", "-Regular.ttc"))})
      self._fallbacks = [find_face(name, self.dirs) for name in names]
      self._fallbacks = [face for face in self._fallbacks if face.path not in known]
    return self._fallbacks

  def face_for(self, char: str, emoji: bool = False) -> int:
    """Index of the face that draws `char` (emoji: prefer the emoji face), -1 if none covers it."""
    key = (ord(char), emoji)
    if key in self._choice:
      return self._choice[key]
    with self._lock:
      choice = self._choose(ord(char), emoji)
      self._choice[key] = choice
    return choice

  def _choose(self, codepoint: int, emoji: bool) -> int:
    if emoji:
      for index, face in enumerate(self.faces):
        if face.bitmap and codepoint in self._coverages[index]:
          return index
    for index, covered in enumerate(self._coverages):
      if codepoint in covered:
        return index
    for face in self._fallback_faces():
      if codepoint in coverage(face):
        self._fallbacks.remove(face)
        self.faces.append(face)
        self._coverages.append(coverage(face))
        return len(self.faces) - 1
    return -1

  @functools.lru_cache(maxsize=1 << 16)
  def runs(self, word: str) -> tuple[tuple[tuple[int, str], ...], tuple[int, ...]]:
    """Splits a whitespace-free word into (face index, text) runs; also the uncovered code points.

    A character no face covers is drawn by the face of its neighbours (its .notdef box), so it
    does not break the shaping of the word around it.
    """
    if self.ascii_primary and word.isascii():
      return ((0, word),), ()
    chosen: list[int | None] = []
    uncovered = []
    for position, char in enumerate(word):
      if _inherits(char):
        chosen.append(None)
        continue
      following = word[position + 1:position + 3]
      emoji = following[:1] == _VARIATION_SELECTOR_16 or _KEYCAP in following
      face = self.face_for(char, emoji)
      previous = chosen[-1] if chosen else None
      if face < 0:
        uncovered.append(ord(char))
        chosen.append(None)
      elif (previous is not None and not _is_letter(char) and not emoji
            and self.covers(previous, char)):
        chosen.append(previous)
      else:
        chosen.append(face)
    # Characters before the first letter take its face where it covers them ("(" before Arabic).
    first_letter = next((position for position, (char, face) in enumerate(zip(word, chosen))
                         if face is not None and _is_letter(char)), len(word))
    if first_letter < len(word):
      letter_face = chosen[first_letter]
      for position in range(first_letter):
        if chosen[position] is None or self.covers(letter_face, word[position]):
          chosen[position] = letter_face
    faces = []
    for face in chosen:
      if face is None:
        face = faces[-1] if faces else next((f for f in chosen if f is not None), 0)
      faces.append(face)
    runs = []
    start = 0
    for position in range(1, len(word) + 1):
      if position == len(word) or faces[position] != faces[start]:
        runs.append((faces[start], word[start:position]))
        start = position
    return tuple(runs), tuple(uncovered)


@functools.lru_cache(maxsize=None)
def font_set(font_dir: str = "", preferred: tuple[str, ...] = PREFERRED_FONTS) -> FontSet:
  """The process-wide FontSet for a font directory and preference list."""
  return FontSet(font_dir, preferred)
