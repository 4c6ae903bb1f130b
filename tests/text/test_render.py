"""Tests for noembed.text.render and noembed.text.fonts (VTR rendering, after esalesky/visrep)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from noembed.text import fonts
from noembed.text import render
from noembed.text.common import TruncationStats

WINDOW, STRIDE, PAD = 30, 20, 3


def visrep_crop_width(text_width, window, stride):
  """visrep TextImageGenerator.get_surface's width rounding, transcribed."""
  crop_width = max(window, text_width)
  if (crop_width - window) % window != 0:
    crop_width += window - ((crop_width - stride) % window)
  return crop_width


def visrep_num_slices(crop_width, window, stride):
  return len(range(0, crop_width - window + 1, stride))


def ink_columns(image, threshold=200):
  return np.flatnonzero((image < threshold).any(0))


def ink_rows(image, threshold=200):
  return np.flatnonzero((image < threshold).any(1))


def line_of(slices, mask, row=0, stride=STRIDE):
  """Reassembles the line image from its overlapping windows."""
  count = int(mask[row].sum())
  return np.concatenate([slices[row, 0]] + [slices[row, i, :, -stride:] for i in range(1, count)],
                        axis=1)


def ink(text, **kwargs):
  """The text's line, cropped to its ink."""
  slices, mask = render.render([text], max_slices=64, **kwargs)
  line = line_of(slices, mask, stride=kwargs.get("stride", STRIDE))
  columns = ink_columns(line)
  return line[:, columns[0]:columns[-1] + 1]


# Geometry.

@pytest.mark.parametrize("window,stride", [(30, 20), (25, 10), (20, 5), (30, 30), (27, 10)])
def test_width_tiles_exactly_and_minimally(window, stride):
  for width in range(1, 400):
    count = render.num_slices(width, window, stride)
    line_width = window + (count - 1) * stride
    assert line_width >= width, (width, count)
    assert count == 1 or window + (count - 2) * stride < width, (width, count)
    visrep_width = visrep_crop_width(width, window, stride)
    visrep_count = visrep_num_slices(visrep_width, window, stride)
    if window + (visrep_count - 1) * stride == visrep_width:  # visrep's width tiles exactly
      assert count <= visrep_count, width
      if visrep_width == line_width:
        assert count == visrep_count, width


def test_visrep_rounding_cases_it_gets_wrong():
  # At 30/20 visrep keeps 2 slices of a 60 px line (covering 50 px) and gives a 50 px line 3.
  assert visrep_crop_width(60, 30, 20) == 60 and visrep_num_slices(60, 30, 20) == 2
  assert visrep_crop_width(50, 30, 20) == 80 and visrep_num_slices(80, 30, 20) == 3
  assert render.num_slices(60, 30, 20) == 3 and render.num_slices(50, 30, 20) == 2


def test_visrep_default_height_and_vertical_pads():
  height = render.line_height()
  assert height == 21  # visrep: "usually about 21 for an 8 point font"
  line = ink(render.REFERENCE_TEXT)
  rows = ink_rows(line, threshold=255)
  assert rows[0] == PAD and rows[-1] == height - PAD - 1


def test_slice_count_and_overlap():
  slices, mask = render.render(["The quick brown fox.", ""], max_slices=16)
  assert slices.shape == (2, 16, 21, WINDOW) and slices.dtype == np.uint8
  count = int(mask[0].sum())
  assert count > 1
  assert mask[0, :count].all() and not mask[0, count:].any()
  for i in range(count - 1):  # stride < window: neighbours share window - stride columns
    np.testing.assert_array_equal(slices[0, i, :, STRIDE:], slices[0, i + 1, :, :WINDOW - STRIDE])
  assert (slices[0, count:] == 255).all()
  assert mask[1].sum() == 1 and (slices[1] == 255).all()  # empty text: one blank slice


def test_count_matches_rendered_width():
  text = "Robust open-vocabulary translation"
  slices, mask = render.render([text], max_slices=32)
  face = fonts.font_set().faces[0]
  runs = [word for part in text.split(" ") for word in (part, " ")][:-1]
  advance = sum(render._advance(face, 8 * 120 / 72, run, "ltr") for run in runs)
  assert mask[0].sum() == render.num_slices(int(np.ceil(advance)) + 2 * PAD, WINDOW, STRIDE)
  line = line_of(slices, mask)
  columns = ink_columns(line)
  assert PAD <= columns[0] <= PAD + 2
  assert columns[-1] < PAD + advance + 2


def test_no_overlap_when_stride_equals_window():
  slices, mask = render.render(["abcdefghijklmnop"], window=10, stride=10, max_slices=32)
  count = int(mask[0].sum())
  line = np.concatenate(list(slices[0, :count]), axis=1)
  assert line.shape[1] == 10 * count and (line < 128).any()


def test_pixel_convention():
  slices, mask = render.render(["H"], max_slices=2)
  assert slices[0, 0].max() == 255 and slices[0, 0].min() < 64
  assert (slices[0, 1] == 255).all() and not mask[0, 1]


# Shaping and bidi.

def test_arabic_word_joins():
  word = "بيت"  # all letters join
  joined = ink(word)
  isolated = np.concatenate([ink(letter) for letter in reversed(word)], axis=1)
  assert abs(joined.shape[1] - isolated.shape[1]) >= 3
  assert (joined < 200).any(0).all()  # one connected stroke: no blank column inside the word
  unjoined = ink("\u200c".join(word))  # ZWNJ keeps the letters apart
  assert not (unjoined < 200).any(0).all()


def test_devanagari_conjunct():
  conjunct = ink("क्ष")
  letters = ink("क").shape[1] + ink("ष").shape[1]
  assert conjunct.shape[1] < 0.8 * letters
  explicit_virama = ink("क्\u200cष")
  assert explicit_virama.shape != conjunct.shape or (explicit_virama != conjunct).any()


def _ascender_minus_descender_column(image):
  """Mean column of ink above the x-height minus mean column of ink below the baseline."""
  baseline = PAD + render._ascent(fonts.font_set(), 8 * 120 / 72)
  dark = image < 128
  top = np.flatnonzero(dark[:baseline - 8].any(0))
  bottom = np.flatnonzero(dark[baseline + 1:].any(0))
  return top.mean() - bottom.mean()


def test_hebrew_is_right_to_left():
  # lamed rises above the x-height, final nun descends below the baseline.
  assert _ascender_minus_descender_column(ink("lp")) < 0  # left to right: l left of p
  assert _ascender_minus_descender_column(ink("לן")) > 0  # first letter, lamed, at the right
  assert _ascender_minus_descender_column(ink("ל ן")) > 0  # word order too


def test_rtl_words_inside_left_to_right_paragraph():
  # "x" starts a left-to-right paragraph; the Hebrew words inside it still read right to left.
  assert _ascender_minus_descender_column(ink("x ל ן")[:, 10:]) > 0


def test_rtl_truncation_keeps_the_logical_start():
  slices, mask = render.render(["ל" + " ן" * 400], max_slices=3)
  line = line_of(slices, mask)
  baseline = PAD + render._ascent(fonts.font_set(), 8 * 120 / 72)
  ascender_columns = np.flatnonzero((line[:baseline - 8] < 128).any(0))
  assert ascender_columns.size and ascender_columns.min() > line.shape[1] // 2


# Fonts.

def _face_name(font_set, word):
  runs, _ = font_set.runs(word)
  return [(os.path.basename(font_set.faces[face].path), font_set.faces[face].index, text)
          for face, text in runs]


def test_font_per_script():
  font_set = fonts.font_set()
  assert _face_name(font_set, "hello") == [("NotoSans-Regular.ttf", 0, "hello")]
  assert _face_name(font_set, "Привет")[0][0] == "NotoSans-Regular.ttf"
  assert _face_name(font_set, "مرحبا")[0][0] == "NotoNaskhArabic-Regular.ttf"
  assert _face_name(font_set, "שלום")[0][0] == "NotoSansHebrew-Regular.ttf"
  assert _face_name(font_set, "हिन्दी") == [("NotoSansDevanagari-Regular.ttf", 0, "हिन्दी")]
  assert _face_name(font_set, "你好") == [("NotoSansCJK-Regular.ttc", 2, "你好")]
  assert _face_name(font_set, "👨‍👩‍👧")[0][:2] == ("NotoColorEmoji.ttf", 0)
  assert len(font_set.runs("👨‍👩‍👧")[0]) == 1  # the ZWJ sequence stays one run
  assert _face_name(font_set, "1\ufe0f\u20e3")[0][0] == "NotoColorEmoji.ttf"  # keycap


def test_runs_split_scripts_and_keep_marks_and_punctuation():
  font_set = fonts.font_set()
  assert [name for name, _, _ in _face_name(font_set, "abcمرحبا")] == [
      "NotoSans-Regular.ttf", "NotoNaskhArabic-Regular.ttf"]
  # Punctuation goes with the script it sits in where that face has it (Naskh has no parens).
  assert _face_name(font_set, "«مرحبا».") == [("NotoNaskhArabic-Regular.ttf", 0, "«مرحبا».")]
  assert [text for _, _, text in _face_name(font_set, "(مرحبا)")] == ["(", "مرحبا", ")"]
  assert len(font_set.runs("e\u0301te\u0301")[0]) == 1  # combining acute stays with its base


def test_fallback_font_outside_the_preference_list():
  font_set = fonts.font_set()
  assert _face_name(font_set, "\U0001e900")[0][0] == "NotoSansAdlam-Regular.ttf"


def test_missing_font_error_names_the_font(tmp_path):
  with pytest.raises(FileNotFoundError, match="NotoSans-Regular.ttf.*fonts-noto-core"):
    render.render(["x"], font_dir=str(tmp_path))
  os.symlink(fonts.font_set().faces[0].path, tmp_path / "NotoSans-Regular.ttf")
  with pytest.raises(FileNotFoundError, match="NotoSansCJK-Regular.ttc.*fonts-noto-cjk"):
    render.render(["x"], font_dir=str(tmp_path),
                  fonts=("NotoSans-Regular.ttf", "NotoSansCJK-Regular.ttc#2"))


def test_uncovered_glyphs_are_counted_and_drawn_as_notdef(tmp_path):
  os.symlink(fonts.font_set().faces[0].path, tmp_path / "NotoSans-Regular.ttf")
  options = dict(font_dir=str(tmp_path), fonts=("NotoSans-Regular.ttf",))
  coverage = render.GlyphCoverage()
  slices, mask = render.render(["aאb \u05d1", "plain"], coverage=coverage, **options)
  assert coverage.uncovered == 2 and coverage.characters == 4 + 5
  assert coverage.uncovered_codepoints == {0x5d0: 1, 0x5d1: 1}
  with_box = line_of(slices, mask)
  without = line_of(*render.render(["ab"], **options))
  assert ink_columns(with_box)[-1] > ink_columns(without)[-1] + 5  # the boxes take room
  coverage = render.GlyphCoverage()
  render.render(["Emoji 😀, ZWJ\u200d, VS\ufe0f"], coverage=coverage)
  assert coverage.uncovered == 0


# Determinism and odd input.

def test_deterministic_across_calls_caches_batches_and_workers():
  texts = ["The quick brown fox", "مرحبا بالعالم", "क्षत्रिय 😀"]
  first = render.render(texts, max_slices=12)
  render._ink.cache_clear()
  render._advance.cache_clear()
  again = render.render(texts, max_slices=12)
  alone = render.render(texts[1:2], max_slices=12)
  workers = render.render(texts, max_slices=12, num_workers=2)
  for other in (again, workers):
    np.testing.assert_array_equal(first[0], other[0])
    np.testing.assert_array_equal(first[1], other[1])
  np.testing.assert_array_equal(first[0][1], alone[0][0])


def test_non_str_raises_type_error_naming_the_index():
  with pytest.raises(TypeError, match=r"texts\[1\] is int"):
    render.render(["ok", 3])
  with pytest.raises(TypeError, match="single str"):
    render.render("ok")


@pytest.mark.parametrize("options,message", [
    ({"stride": 31}, "stride must be at most window"), ({"window": 0}, "window"),
    ({"pad": -1}, "pad"), ({"font_size": 0}, "font_size"), ({"num_workers": -1}, "num_workers"),
    ({"max_slices": 0}, "max_slices")])
def test_bad_options(options, message):
  with pytest.raises(ValueError, match=message):
    render.render(["x"], **options)


def test_odd_text_never_raises():
  odd = ["", "\x00", "a\x00b\x07c", "\ud800 lone \udfff", "tab\tnew\nline\r", "\u200d" * 500,
         "e" + "\u0301" * 300, "🏳️‍🌈👍🏽🇩🇪", "\U0010ffff\ue000", "\u202eoverride", " " * 50]
  stats = TruncationStats()
  slices, mask = render.render(odd, max_slices=8, stats=stats)
  assert slices.shape[:2] == (len(odd), 8) and mask[:, 0].all()
  assert stats.texts == len(odd)
  np.testing.assert_array_equal(slices[1], render.render([""], max_slices=8)[0][0])  # NUL dropped


def test_ten_megabyte_text_is_truncated_and_counted():
  stats = TruncationStats()
  long_text = "lorem ipsum " * (10_000_000 // 12)
  slices, mask = render.render([long_text, "hi"], max_slices=8, stats=stats)
  assert mask[0].all() and mask[1].sum() == 1
  assert stats.texts == 2 and stats.truncated_texts == 1
  # The rest past 100k characters is extrapolated from the measured part's mean advance.
  face = fonts.font_set().faces[0]
  pixels_per_repeat = sum(render._advance(face, 8 * 120 / 72, run, "ltr")
                          for run in ("lorem", " ", "ipsum", " "))
  expected = 10_000_000 // 12 * pixels_per_repeat / STRIDE
  assert abs(stats.dropped_units - expected) < 0.01 * expected
  stats = TruncationStats()
  render.render(["x" * 10_000_000, "\u200d" * 1_000_000], max_slices=4, stats=stats)
  assert stats.truncated_texts == 1


def test_front_end_does_not_import_jax():
  code = "import sys, noembed.text.render; assert not {'jax', 'flax'} & set(sys.modules)"
  subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
