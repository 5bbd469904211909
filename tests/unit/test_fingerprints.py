"""Fingerprint models against upstream reference values: Chromaprint's own test vectors and Meta's
PDQ reference hashes (from ../shared/data), plus the bad-media errors and distance properties."""
from __future__ import annotations

import csv
import io
import shutil
import struct
import wave
import zlib
from pathlib import Path

import imagehash
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from models.fingerprints import (
    FingerprintUnavailable,
    MediaError,
    best_alignment,
    bit_error_rate,
    chromaprint_file,
    chromaprint_pcm,
    hamming,
    image_hashes,
    load_image,
    pdq_dihedral,
)
from models.fingerprints import audio as audio_mod

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CHROMAPRINT_DATA = DATA / "chromaprint"
PDQ_DATA = DATA / "threatexchange" / "pdq"

needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real test data not found at {DATA} (../shared/data)"
)


def _have_chromaprint() -> bool:
    try:
        import chromaprint  # noqa: F401
    except ImportError:
        return False
    return True


needs_chromaprint = pytest.mark.skipif(
    not _have_chromaprint(),
    reason="libchromaprint missing: apt-get install libchromaprint1 "
    "(scripts/install-system-deps.sh)",
)
needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None,
    reason="ffmpeg missing: apt-get install ffmpeg (scripts/install-system-deps.sh)",
)


# ---------------------------------------------------------------- Chromaprint reference values


@needs_data
@needs_chromaprint
def test_chromaprint_matches_upstream_api_test_vector():
    # EXPECTED.md: test_stereo_44100.raw read as flat int16 samples, fed whole as 1 channel at
    # 44100 Hz, default algorithm TEST2.
    pcm = (CHROMAPRINT_DATA / "test_stereo_44100.raw").read_bytes()
    fp = chromaprint_pcm(pcm, 44100, 1)
    assert fp.encoded == "AQAAC0kkZUqYREkUnFAXHk8uuMZl6EfO4zu-4ABKFGESWIIMEQE"
    assert fp.simhash == 3732003127
    assert fp.algorithm == 1
    assert fp.raw.dtype == np.uint32 and fp.raw.ndim == 1 and len(fp.raw) > 0
    assert fp.duration_s == pytest.approx(len(pcm) / 2 / 44100)


@needs_chromaprint
def test_chromaprint_of_silence_matches_upstream():
    # EXPECTED.md: 130 blocks of 1024 zero samples, 44100 Hz mono.
    fp = chromaprint_pcm(bytes(2 * 1024 * 130), 44100, 1)
    assert fp.encoded == "AQAAA0mUaEkSRZEGAA"
    assert fp.simhash == 627964279


@needs_data
@needs_chromaprint
@needs_ffmpeg
def test_chromaprint_file_agrees_with_fpcalc_on_the_mp3():
    text = (CHROMAPRINT_DATA / "test.mp3.fpcalc.out").read_text()
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    expected = np.array([int(x) for x in fields["FINGERPRINT"].split(",")], dtype=np.uint32)
    fp = chromaprint_file(CHROMAPRINT_DATA / "test.mp3")
    assert round(fp.duration_s) == int(fields["DURATION"])
    assert len(fp.raw) == len(expected)
    # MP3 decoders differ in the last bits, so fpcalc's upstream output is matched by bit error
    # rate at the best alignment, not bit for bit.
    offset, ber = best_alignment(fp.raw, expected, max_offset=5)
    assert offset == 0
    assert ber < 0.01


@needs_data
@needs_chromaprint
def test_the_same_audio_at_two_sample_rates_fingerprints_alike():
    # Each file holds 2 s, below Chromaprint's ~3 s minimum, so each is played three times.
    a = chromaprint_pcm((CHROMAPRINT_DATA / "test_mono_44100.raw").read_bytes() * 3, 44100, 1)
    b = chromaprint_pcm((CHROMAPRINT_DATA / "test_mono_11025.raw").read_bytes() * 3, 11025, 1)
    _, ber = best_alignment(a.raw, b.raw, max_offset=2)
    assert ber < 0.1


@needs_data
@needs_chromaprint
@needs_ffmpeg
def test_an_excerpt_is_found_at_its_offset():
    full = chromaprint_file(CHROMAPRINT_DATA / "test.mp3").raw
    offset, ber = best_alignment(full[20:45], full)
    assert (offset, ber) == (20, 0.0)


# ---------------------------------------------------------------- bit error rate


def test_bit_error_rate_basics():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 2**32, size=200, dtype=np.uint32)
    assert bit_error_rate(a, a) == 0.0
    assert bit_error_rate(a, ~a) == 1.0
    b = rng.integers(0, 2**32, size=200, dtype=np.uint32)
    assert 0.45 < bit_error_rate(a, b) < 0.55
    # a[i] is compared with b[i + offset]
    shifted = np.concatenate([b[:7], a])
    assert bit_error_rate(a, shifted, 7) == 0.0
    assert bit_error_rate(shifted, a, -7) == 0.0
    one_bit = a.copy()
    one_bit[0] ^= 1
    assert bit_error_rate(a, one_bit) == pytest.approx(1 / (32 * 200))
    with pytest.raises(ValueError):
        bit_error_rate(a, b, 200)


def test_best_alignment_recovers_a_planted_offset_and_rejects_noise():
    rng = np.random.default_rng(11)
    reference = rng.integers(0, 2**32, size=500, dtype=np.uint32)
    query = reference[123:203].copy()
    flips = rng.random((80, 32)) < 0.1  # 10 % bit noise
    query ^= np.packbits(flips, axis=1, bitorder="little").view(np.uint32).reshape(-1)
    offset, ber = best_alignment(query, reference)
    assert offset == 123
    assert 0.05 < ber < 0.15
    _, ber_unrelated = best_alignment(rng.integers(0, 2**32, 80, dtype=np.uint32), reference)
    assert ber_unrelated > 0.4
    with pytest.raises(ValueError):
        best_alignment(query, reference, max_offset=-1000)


# ---------------------------------------------------------------- audio bad media


def _wav(path: Path, seconds: float, rate: int = 11025) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        t = np.arange(int(seconds * rate)) / rate
        w.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
    return path


@needs_chromaprint
@needs_ffmpeg
def test_audio_media_errors(tmp_path):
    noise = tmp_path / "noise.mp3"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(MediaError, match="unreadable"):
        chromaprint_file(noise)
    with pytest.raises(MediaError, match="not found"):
        chromaprint_file(tmp_path / "missing.wav")
    with pytest.raises(MediaError, match="too short"):
        chromaprint_file(_wav(tmp_path / "short.wav", 1.0))
    png = tmp_path / "still.png"
    Image.new("RGB", (64, 64), "red").save(png)
    with pytest.raises(MediaError, match="no audio stream"):
        chromaprint_file(png)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(_wav(tmp_path / "long.wav", 10.0).read_bytes()[:30])
    with pytest.raises(MediaError):
        chromaprint_file(truncated)
    ok = chromaprint_file(_wav(tmp_path / "ok.wav", 10.0))
    assert ok.duration_s == pytest.approx(10, abs=0.01)


def test_missing_ffmpeg_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(audio_mod.shutil, "which", lambda name: None)
    with pytest.raises(FingerprintUnavailable, match="apt-get install ffmpeg"):
        chromaprint_file(tmp_path / "x.wav")


def test_media_error_is_a_value_error():
    assert issubclass(MediaError, ValueError)


# ---------------------------------------------------------------- PDQ reference values


def _expected_pdq() -> list[tuple[str, str]]:
    with open(PDQ_DATA / "expected_pdq.csv", newline="") as f:
        return [(row["path"], row["pdq_hex"]) for row in csv.DictReader(f)]


@needs_data
def test_pdq_within_10_of_meta_reference_for_every_image(capsys):
    rows = _expected_pdq()
    assert len(rows) >= 10
    distances = {}
    for path, expected_hex in rows:
        h = image_hashes(PDQ_DATA / path)
        assert len(h.pdq) == 32 and len(h.pdq_hex) == 64
        distances[path] = hamming(h.pdq, bytes.fromhex(expected_hex))
    values = list(distances.values())
    with capsys.disabled():
        print(
            f"\nPDQ vs Meta reference over {len(values)} images: max Hamming distance "
            f"{max(values)}, mean {np.mean(values):.2f}"
        )
    assert max(values) <= 10, distances


# Meta's C++ pdq-photo-hasher output for ThreatExchange pdq/data/exif-rotn (published in
# ThreatExchange's PDQ MySQL hash-lookup example): it hashes the stored pixels, ignoring EXIF.
EXIF_REFERENCE = {
    1: "f439d924da56a1d4c63973a56acfc926cd53d9341b18367d318666cf9b142649",
    3: "3acfa3cfab36b95e39cfa0023946790af441f1417d850401f7616005ffc17ff2",
    6: "e9782aad54ae0b6365315ac278592d68d4b5434a5fcd7471f7abcb594b481a94",
    8: "6b507c23b4adb07ec2fe2b4db52038b15e0c970fcaf3f049058ae8687bf9251e",
}


@needs_data
@pytest.mark.parametrize("orientation", sorted(EXIF_REFERENCE))
def test_exif_orientation_is_ignored_like_meta_reference(orientation):
    path = PDQ_DATA / "exif-rotn" / f"exif-rotn-{orientation}.jpg"
    reference = bytes.fromhex(EXIF_REFERENCE[orientation])
    assert hamming(image_hashes(path).pdq, reference) <= 10
    upright = image_hashes(path, apply_exif_orientation=True)
    if orientation in (6, 8):  # 90-degree turns swap the sides
        assert (upright.width, upright.height) == (3024, 4032)
    if orientation != 1:
        assert hamming(upright.pdq, reference) > 64


@needs_data
def test_dihedral_hashes_match_the_rotated_and_flipped_files():
    expected = dict(_expected_pdq())
    names = ["1-original", "2-rotate-90", "3-rotate-180", "4-rotate-270", "5-flipx", "6-flipy",
             "7-flip-plus-1", "8-flip-minus-1"]
    hashes, quality = pdq_dihedral(load_image(PDQ_DATA / "dih" / "bridge-1-original.jpg"))
    assert quality >= 50 and len(hashes) == 8
    for name in names:
        target = bytes.fromhex(expected[f"dih/bridge-{name}.jpg"])
        assert min(hamming(h, target) for h in hashes) <= 31, name


@needs_data
def test_every_colour_mode_hashes_like_the_original():
    modes = PDQ_DATA / "misc-images" / "modes"
    original = image_hashes(modes / "original.jpg")
    files = [p for p in sorted(modes.iterdir()) if p.suffix != ".md"]
    assert len(files) >= 10
    for p in files:
        h = image_hashes(p)
        assert hamming(h.pdq, original.pdq) <= 10, p.name
        assert hamming(h.phash, original.phash) <= 4, p.name


def test_phash_is_imagehash_phash_and_quality_flags_flat_images():
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (120, 90, 3), dtype=np.uint8))
    h = image_hashes(_png_bytes(img))
    assert h.phash_hex == str(imagehash.phash(img))
    assert (h.width, h.height) == (90, 120)
    assert image_hashes(_png_bytes(Image.new("RGB", (100, 100), "grey"))).pdq_quality < 50


# ---------------------------------------------------------------- image bad media


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_image_media_errors(tmp_path):
    with pytest.raises(MediaError, match="not a recognised image"):
        image_hashes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(MediaError, match="not a recognised image"):
        image_hashes(b"")
    buf = io.BytesIO()
    noise = np.random.default_rng(2).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG", quality=90)
    with pytest.raises(MediaError, match="truncated"):
        image_hashes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(MediaError, match="too large"):
        image_hashes(_png_header_only(100_000, 100_000))  # 10 gigapixels, 57 bytes
    with pytest.raises(MediaError, match="too large"):
        image_hashes(_png_bytes(Image.new("RGB", (200, 200))), max_pixels=10_000)
    with pytest.raises(MediaError, match="not found"):
        image_hashes(tmp_path / "missing.jpg")


# ---------------------------------------------------------------- Hamming distance properties

hashes32 = st.binary(min_size=32, max_size=32)


@given(hashes32, hashes32, hashes32)
def test_hamming_is_a_metric(a, b, c):
    assert hamming(a, a) == 0
    assert hamming(a, b) == hamming(b, a)
    assert (hamming(a, b) == 0) == (a == b)
    assert hamming(a, c) <= hamming(a, b) + hamming(b, c)
    assert hamming(a, b) == bin(int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).count("1")


def test_hamming_rejects_different_lengths():
    assert hamming(b"\x00" * 32, b"\xff" * 32) == 256
    with pytest.raises(ValueError):
        hamming(b"\x00" * 32, b"\x00" * 8)
