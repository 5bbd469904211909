"""The reference bank and the matching policy on real media from ../shared/data: copies that dodge
PDQ are caught, unrelated photos are not, a 10 s-style excerpt is found at the right offset,
withdrawal works, bad media is a MediaError, and metadata is evidence, not proof."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from models.copyright import (CopyrightDecision, Match, ReferenceBank, decide,
                              reference_fingerprints)
from models.copyright.matching import align
from models.fingerprints import MediaError, best_alignment, load_image

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
COCO = sorted((DATA / "coco-captions" / "images").glob("*.jpg"))
TEST_MP3 = DATA / "chromaprint" / "test.mp3"
VIDEOS = DATA / "threatexchange" / "videos"
needs_data = pytest.mark.skipif(len(COCO) < 10, reason=f"real media not found under {DATA}")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


@pytest.fixture(scope="module")
def bank():
    if len(COCO) < 10:
        pytest.skip(f"real media not found under {DATA}")
    b = ReferenceBank()
    for p in COCO[:6]:
        b.register_file(p, title=f"Photo {p.stem}", rights_holder_id="agency-1")
    return b


def _save(im: Image.Image, path: Path, quality: int = 90) -> Path:
    im.save(path, "JPEG", quality=quality)
    return path


@needs_data
def test_reference_id_defaults_to_the_stem_and_membership(bank):
    assert len(bank) == 6
    assert COCO[0].stem in bank and COCO[7].stem not in bank
    assert bank.get(COCO[0].stem).modality == "IMAGE"


@needs_data
def test_crop_and_logo_copies_are_blocked_by_the_robust_stage(bank, tmp_path):
    im = load_image(str(COCO[2]))
    w, h = im.size
    crop = _save(im.crop((w // 20, h // 20, w - w // 20, h - h // 20)), tmp_path / "crop.jpg")
    logo = im.copy()
    ImageDraw.Draw(logo).rectangle((0, int(h * 0.75), w, h), fill=(10, 10, 90))
    logo = _save(logo, tmp_path / "logo.jpg")
    for path in (crop, logo):
        d = bank.match_file(path)
        assert d.matched and d.action == "BLOCK" and d.modality == "IMAGE"
        assert d.best.reference_id == COCO[2].stem and d.best.kind in ("ORB", "PDQ")
        j = d.as_json(str(path))
        assert j["reference"] == COCO[2].stem and j["rights_holder_id"] == "agency-1"
    assert bank.match_file(crop).best.kind == "ORB"


@needs_data
def test_recompressed_and_rotated_copies_match_by_pdq(bank, tmp_path):
    im = load_image(str(COCO[3]))
    for path in (_save(im, tmp_path / "q30.jpg", 30),
                 _save(im.transpose(Image.Transpose.ROTATE_90), tmp_path / "r90.jpg")):
        d = bank.match_file(path)
        assert d.matched and d.best.kind == "PDQ" and d.best.hamming_distance <= 31
        assert d.as_json()["distance"] == d.best.hamming_distance


@needs_data
def test_unrelated_photos_are_allowed_and_metadata_alone_decides_nothing(bank):
    for p in COCO[6:10]:
        d = bank.match_file(p, metadata={"caption": f"photo {COCO[0].stem} #repost"})
        assert not d.matched and d.action == "ALLOW", d.reasons
        assert any("not evidence alone" in r for r in d.reasons)


@needs_data
def test_policies_and_withdraw(tmp_path):
    b = ReferenceBank()
    b.register_file(COCO[0], "monitored", policy="MONITOR")
    b.register_file(COCO[1], "restricted", policy="RESTRICT")
    d = b.match_file(COCO[0])
    assert d.matched and d.action == "ALLOW" and d.best.reference_id == "monitored"
    assert b.match_file(COCO[1]).action == "RESTRICT"
    assert b.withdraw("restricted") and not b.withdraw("restricted")
    assert "restricted" not in b and len(b) == 1
    d = b.match_file(COCO[1])
    assert not d.matched and d.action == "ALLOW"


@needs_data
def test_event_form_fingerprints_register_the_same_work(tmp_path):
    modality, fps = reference_fingerprints(COCO[4])
    assert modality == "IMAGE" and {f["kind"] for f in fps} == {"PDQ", "PHASH", "ORB"}
    b = ReferenceBank()
    b.register_fingerprints("from-event", modality, fps, title="T", rights_holder_id="h",
                            policy="BLOCK")
    im = load_image(str(COCO[4]))
    w, h = im.size
    d = b.match_file(_save(im.crop((w // 10, 0, w, h)), tmp_path / "c.jpg"))
    assert d.matched and d.best.reference_id == "from-event"
    with pytest.raises(ValueError, match="32 bytes"):
        b.register_fingerprints("bad", "IMAGE", [{"kind": "PDQ", "offset_ms": 0, "value": b"x"}])
    with pytest.raises(ValueError, match="policy"):
        b.register_fingerprints("bad", "IMAGE", fps, policy="DELETE")


@needs_data
@needs_ffmpeg
def test_audio_excerpt_matches_at_its_offset(tmp_path):
    b = ReferenceBank()
    b.register_file(TEST_MP3, "song", title="Test song")
    excerpt = tmp_path / "excerpt.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "3", "-t", "6", "-i", str(TEST_MP3),
                    "-b:a", "64k", str(excerpt)], check=True)
    d = b.match_file(excerpt)
    assert d.matched and d.modality == "AUDIO" and d.best.kind == "CHROMAPRINT"
    assert d.best.bit_error_rate < 0.2
    assert abs(d.best.reference_offset_ms - 3000) <= 400  # Chromaprint items are 124 ms apart
    assert d.best.matched_ms > 0


@needs_data
def test_large_logo_bar_video_copy_matches():
    b = ReferenceBank()
    b.register_file(VIDEOS / "pattern-hd-no-bar.mp4", title="Pattern")
    d = b.match_file(VIDEOS / "pattern-sd-with-large-logo-bar.mp4")
    assert d.matched and d.modality == "VIDEO" and d.best.reference_id == "pattern-hd-no-bar"
    assert d.best.matched_ms >= 3000
    assert not b.match_file(DATA / "media" / "video" / "bigbuckbunny.mp4").matched


@needs_data
def test_bad_media_raises_media_error_and_gets_a_verdict(bank, tmp_path):
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(COCO[0].read_bytes()[:2000])
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    short = DATA / "media" / "audio" / "alsa" / "Noise.wav"
    for path, reason in ((truncated, "truncated"), (text, "unreadable|unsupported|truncated"), (short, "too short"),
                         (tmp_path / "missing.png", "not found")):
        with pytest.raises(MediaError, match=reason):
            bank.match_file(path)
        d = bank.decision_for_file(path)
        assert d.error and d.action == "REVIEW" and not d.matched


def _m(confirmed: bool, policy: str = "BLOCK", ref: str = "r1") -> Match:
    return Match(reference_id=ref, rights_holder_id="h", kind="PDQ", modality="IMAGE",
                 similarity=0.8, confirmed=confirmed, policy=policy)


def test_policy_strictest_wins_borderline_reviews_weak_needs_metadata():
    assert decide("IMAGE", []).action == "ALLOW"
    assert decide("IMAGE", [_m(True, "MONITOR"), _m(True, "RESTRICT", "r2")]).action == "RESTRICT"
    d = decide("IMAGE", [_m(False)])
    assert d.action == "REVIEW" and not d.matched
    assert decide("IMAGE", [], weak=[_m(False)]).action == "ALLOW"
    assert decide("IMAGE", [], weak=[_m(False)], metadata_hits={"r1"}).action == "REVIEW"
    assert decide("IMAGE", [], metadata_hits={"r1"}).action == "ALLOW"
    assert isinstance(decide("AUDIO", [_m(True)]), CopyrightDecision)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40),
       st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=60))
def test_vectorised_alignment_equals_the_reference_loop(q, r):
    q, r = np.array(q, np.uint32), np.array(r, np.uint32)
    need = min(8, len(q), len(r))
    offset, ber, overlap = align(q, r, need)
    _, want = best_alignment(q, r, min_overlap=need)
    assert ber == pytest.approx(want)
    assert overlap >= need
