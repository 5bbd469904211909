"""Video fingerprints on real clips: ThreatExchange's five "pattern" clips of one scene (and Meta's
vPDQ reference hashes of them), unrelated clips from ../shared/data/media, bad media, and the
``pulse fingerprint`` command."""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.fingerprints import (
    MediaError,
    VideoFingerprint,
    detect_modality,
    frame_match_ratio,
    hamming,
    probe,
    sample_frames,
    trim_borders,
    video_fingerprint,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
CLIPS = DATA / "threatexchange" / "videos"
VPDQ = DATA / "threatexchange" / "vpdq-hashes"
MEDIA = DATA / "media" / "video"
ORIGINAL = "pattern-hd-no-bar"
VARIANTS = ["pattern-longer-no-bar", "pattern-sd-grey-bar", "pattern-sd-with-small-logo-bar"]
LARGE_LOGO = "pattern-sd-with-large-logo-bar"
UNRELATED = ["bigbuckbunny.mp4", "carphone_pristine.mp4", "cityCC0.mpg"]

pytestmark = [
    pytest.mark.skipif(not CLIPS.is_dir() or not MEDIA.is_dir(),
                       reason=f"real test clips not found under {DATA} (../shared/data)"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                       reason="ffmpeg missing: apt-get install ffmpeg "
                              "(scripts/install-system-deps.sh)"),
]


@cache
def fingerprint(path: Path, every_s: float = 1.0, trim: bool = True) -> VideoFingerprint:
    return video_fingerprint(path, every_s=every_s, trim=trim)


@cache
def reference() -> VideoFingerprint:
    # A registered work is hashed at every frame, as vPDQ does; uploads at ~1 fps + keyframes.
    return video_fingerprint(CLIPS / f"{ORIGINAL}.mp4", every_s=0, with_audio=False)


def _nearest(fp: VideoFingerprint, ref: VideoFingerprint) -> list[int]:
    return [min(hamming(f.pdq, r.pdq) for r in ref.frames) for f in fp.frames]


# ------------------------------------------------------------------------------------ probing


def test_probe_describes_a_clip():
    info = probe(CLIPS / f"{ORIGINAL}.mp4")
    assert (info["width"], info["height"]) == (720, 1280)
    assert info["duration"] == pytest.approx(6.891, abs=0.01)
    assert info["fps"] == pytest.approx(30.0)
    assert info["has_audio"] is True
    assert probe(MEDIA / "cityCC0.mpg")["has_audio"] is False


def test_sample_frames_about_one_per_second_with_times():
    frames = sample_frames(MEDIA / "bigbuckbunny.mp4")
    times = [t for t, _ in frames]
    assert times == sorted(times) and times[0] == 0.0
    assert 5 <= len(frames) <= 12  # 5.3 s: one a second plus any keyframes
    assert all(max(im.size) <= 512 for _, im in frames)
    assert frames[0][1].size == (512, 288)  # 1280x720 scaled to fit 512, aspect kept
    assert len(sample_frames(MEDIA / "cityCC0.mpg", max_frames=3)) == 3


def test_trim_borders_removes_pillarbox_and_keeps_content():
    content = Image.fromarray(np.random.default_rng(0).integers(60, 255, (100, 80, 3), np.uint8))
    boxed = Image.new("RGB", (140, 100))
    boxed.paste(content, (30, 0))
    assert trim_borders(boxed).size == (80, 100)
    assert trim_borders(content).size == content.size
    dark = Image.new("RGB", (50, 50), (5, 5, 5))
    assert trim_borders(dark).size == (50, 50)


# ----------------------------------------------------------------------------------- matching


@pytest.mark.parametrize("name", [ORIGINAL, *VARIANTS])
def test_variants_match_the_original(name):
    # measured: original 1.0, longer cut 0.875, greyscale SD 1.0, small logo bar 1.0
    ratio = frame_match_ratio(fingerprint(CLIPS / f"{name}.mp4"), reference())
    assert ratio >= 0.8, f"{name}: frame match ratio {ratio:.3f}"


def test_large_logo_bar_is_closer_than_unrelated_but_beyond_pdq():
    # Known limit of PDQ (and of Meta's own vPDQ hashes, which put every frame of this copy 80+
    # bits from the original): a large overlay moves frames 40-75 bits away. The robust matcher
    # (issue 5, item 2) is what catches it; here we pin that it is still nearer than unrelated.
    large = _nearest(fingerprint(CLIPS / f"{LARGE_LOGO}.mp4"), reference())
    unrelated = [d for name in UNRELATED for d in _nearest(fingerprint(MEDIA / name), reference())]
    assert statistics.median(large) < 80 < min(unrelated)


@pytest.mark.parametrize("name", UNRELATED)
def test_unrelated_clips_do_not_match(name):
    fp = fingerprint(MEDIA / name)
    assert frame_match_ratio(fp, reference()) == 0.0
    assert frame_match_ratio(reference(), fp) == 0.0
    assert min(_nearest(fp, reference())) > 90  # measured 100-110


def test_frame_match_ratio_is_one_for_itself_and_respects_threshold():
    fp = fingerprint(MEDIA / "bigbuckbunny.mp4")
    assert frame_match_ratio(fp, fp) == 1.0
    grey = fingerprint(CLIPS / "pattern-sd-grey-bar.mp4")
    assert frame_match_ratio(grey, reference(), max_distance=0) == 0.0


@pytest.mark.parametrize("name", [ORIGINAL, *VARIANTS, LARGE_LOGO])
def test_frame_pdq_close_to_vpdq_reference_hashes(name):
    # vpdq-hashes: frame,quality,pdq_hex,seconds for every frame, from Meta's vPDQ (no trimming).
    rows = [line.split(",") for line in (VPDQ / f"{name}.txt").read_text().splitlines() if line]
    ref = [(float(r[3]), bytes.fromhex(r[2])) for r in rows]
    fp = fingerprint(CLIPS / f"{name}.mp4", trim=False)
    dists = [hamming(f.pdq, min(ref, key=lambda r: abs(r[0] - f.t_s))[1]) for f in fp.frames]
    # measured: medians 10-12, maximum 26 (decoder and scaler differ from vPDQ's)
    assert statistics.median(dists) <= 16, dists
    assert max(dists) <= 31, dists


# -------------------------------------------------------------------------------------- audio


def test_audio_track_fingerprinted_when_present():
    fp = fingerprint(MEDIA / "bigbuckbunny.mp4")
    assert fp.audio is not None and fp.audio.duration_s == pytest.approx(5.3, abs=0.2)
    assert len(fp.audio.raw) > 10
    assert fingerprint(MEDIA / "cityCC0.mpg").audio is None
    assert fingerprint(MEDIA / "cityCC0.mpg").frames


# ---------------------------------------------------------------------------------- bad media


def test_random_bytes_is_media_error(tmp_path):
    bad = tmp_path / "random.bin"
    bad.write_bytes(np.random.default_rng(1).bytes(50_000))
    with pytest.raises(MediaError, match="unreadable|unsupported"):
        video_fingerprint(bad)


def test_truncated_mp4_is_media_error(tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((MEDIA / "bigbuckbunny.mp4").read_bytes()[:10_000])
    with pytest.raises(MediaError, match="truncated|unreadable"):
        video_fingerprint(cut)


def test_image_is_not_a_video(tmp_path):
    png = tmp_path / "still.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(png)
    with pytest.raises(MediaError, match="still image"):
        video_fingerprint(png)
    assert detect_modality(png) == "image"


def test_missing_and_oversized_files(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        video_fingerprint(tmp_path / "absent.mp4")
    with pytest.raises(MediaError, match="over 1 MB"):
        video_fingerprint(MEDIA / "bigbuckbunny.mp4", max_bytes=2**20 - 1)  # file is ~1.0 MB
    with pytest.raises(MediaError, match="empty"):
        (tmp_path / "empty.mp4").write_bytes(b"")
        video_fingerprint(tmp_path / "empty.mp4")


def test_audio_only_file_has_no_video_stream():
    mp3 = DATA / "chromaprint" / "test.mp3"
    assert detect_modality(mp3) == "audio"
    with pytest.raises(MediaError, match="no video stream"):
        video_fingerprint(mp3)


# ---------------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", "fingerprint", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_cli_json_for_image_video_and_audio():
    image = DATA / "threatexchange" / "pdq" / "bridge-mods" / "aaa-orig.jpg"
    out = json.loads(_cli(str(image), "--json").stdout)
    assert out["modality"] == "image" and len(bytes.fromhex(out["pdq"])) == 32
    assert len(bytes.fromhex(out["phash"])) == 8

    proc = _cli(str(MEDIA / "bigbuckbunny.mp4"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["modality"] == "video" and out["file"].endswith("bigbuckbunny.mp4")
    assert out["duration_s"] == pytest.approx(5.312, abs=0.01)
    assert [f["t_s"] for f in out["frames"]][:2] == [0.0, 1.0]
    assert all(len(bytes.fromhex(f["pdq"])) == 32 for f in out["frames"])
    assert out["audio"]["chromaprint"] and out["audio"]["items"] > 10

    out = json.loads(_cli(str(DATA / "chromaprint" / "test.mp3"), "--json").stdout)
    assert out["modality"] == "audio" and out["audio"]["chromaprint"].startswith("AQA")


def test_cli_bad_media_is_one_red_line(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes((MEDIA / "bigbuckbunny.mp4").read_bytes()[:10_000])
    proc = _cli(str(bad), "--json")
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
