"""Chromaprint audio fingerprints and their comparison by bit error rate.

Fingerprints come from libchromaprint through pyacoustid (``acoustid.fingerprint`` feeds PCM to the
library via ctypes; ``chromaprint.decode_fingerprint`` turns the compressed base64 string into the
raw sub-fingerprints). Files are decoded with ffmpeg to 11025 Hz mono signed 16-bit PCM, the rate
Chromaprint resamples to internally, as fpcalc does.

A raw fingerprint is a ``(n,) uint32`` array: one 32-bit sub-fingerprint per Chromaprint frame of
4096 samples at 11025 Hz with a hop of 1365 samples (``ITEM_DURATION_S`` ~ 0.124 s per item).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike

import numpy as np

from models.fingerprints.errors import FingerprintUnavailable, MediaError

SAMPLE_RATE_HZ = 11025
"""Rate files are decoded to before fingerprinting (Chromaprint's internal rate, ``fpcalc``'s)."""

ITEM_DURATION_S = 1365 / SAMPLE_RATE_HZ
"""Seconds of audio between consecutive sub-fingerprints (Chromaprint: frame 4096, overlap 2/3)."""

ALGORITHM_TEST2 = 1
"""Chromaprint's default algorithm id (``CHROMAPRINT_ALGORITHM_TEST2``), the one AcoustID uses."""

_FEED_BLOCK_BYTES = 1 << 16


@dataclass(frozen=True)
class AudioFingerprint:
    """A Chromaprint fingerprint.

    Attributes
    ----------
    raw : (n,) uint32 sub-fingerprints, ~8.07 per second of audio.
    encoded : Chromaprint's compressed, URL-safe base64 form (what ``fpcalc`` prints and AcoustID
        stores); decodes back to ``raw``.
    duration_s : seconds of audio that were fed to the fingerprinter.
    algorithm : Chromaprint algorithm id (1 = TEST2, the default).
    """

    raw: np.ndarray
    encoded: str
    duration_s: float
    algorithm: int

    @property
    def simhash(self) -> int:
        """Chromaprint's 32-bit summary hash of ``raw`` (``chromaprint_hash_fingerprint``): each
        bit is the majority vote of that bit over all items, so similar audio has a small Hamming
        distance between hashes. A coarse pre-filter, not a match."""
        chromaprint = _chromaprint()
        return int(chromaprint.hash_fingerprint([int(x) for x in self.raw]))


def _chromaprint():
    try:
        import chromaprint  # pyacoustid's ctypes binding; raises ImportError without the library
    except ImportError as err:
        raise FingerprintUnavailable(
            "libchromaprint is not installed: apt-get install libchromaprint1 "
            "(or run scripts/install-system-deps.sh)"
        ) from err
    return chromaprint


def chromaprint_pcm(pcm: bytes, sample_rate: int, channels: int) -> AudioFingerprint:
    """Fingerprint raw PCM with libchromaprint.

    Parameters
    ----------
    pcm : signed 16-bit little-endian samples, channels interleaved.
    sample_rate : Hz of ``pcm``; Chromaprint resamples to 11025 Hz itself.
    channels : interleaved channels in ``pcm``; Chromaprint down-mixes them to mono.

    Uses Chromaprint's default algorithm (TEST2), the one fpcalc and AcoustID use.

    Raises
    ------
    MediaError : the audio is too short to give a single sub-fingerprint (about 3 s are needed),
        or the library rejects it.
    FingerprintUnavailable : libchromaprint is missing.
    """
    if sample_rate <= 0 or channels <= 0:
        raise ValueError(
            f"sample_rate and channels must be positive, got {sample_rate}, {channels}"
        )
    chromaprint = _chromaprint()
    usable = len(pcm) - len(pcm) % (2 * channels)
    view = memoryview(pcm)[:usable]

    def blocks() -> Iterator[bytes]:
        for start in range(0, usable, _FEED_BLOCK_BYTES):
            yield bytes(view[start : start + _FEED_BLOCK_BYTES])

    duration_s = usable / 2 / channels / sample_rate
    import acoustid  # pyacoustid; fingerprint() drives libchromaprint through ctypes

    try:
        # No 120 s cap (acoustid's default maxlength): a registered track is fingerprinted whole so
        # that an excerpt from anywhere in it can be aligned.
        encoded = acoustid.fingerprint(
            sample_rate, channels, blocks(), maxlength=int(duration_s) + 1
        )
        raw, algorithm = chromaprint.decode_fingerprint(encoded)
    except (acoustid.FingerprintGenerationError, chromaprint.FingerprintError) as err:
        raise MediaError(
            f"chromaprint could not fingerprint the audio ({duration_s:.2f} s)"
        ) from err
    if not raw:
        raise MediaError(
            f"audio too short to fingerprint: {duration_s:.2f} s; Chromaprint needs about 3 s"
        )
    return AudioFingerprint(
        raw=np.asarray(raw, dtype=np.uint32),
        encoded=encoded.decode("ascii"),
        duration_s=duration_s,
        algorithm=int(algorithm),
    )


def decode_audio(
    path: str | PathLike[str],
    *,
    max_duration_s: float | None = None,
    timeout_s: float = 300.0,
) -> bytes:
    """Decode any audio or video file's first audio stream to 11025 Hz mono s16le PCM with ffmpeg.

    Raises
    ------
    MediaError : unreadable or unsupported file, no audio stream, or nothing decodable.
    FingerprintUnavailable : ffmpeg is not installed.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FingerprintUnavailable(
            "ffmpeg is not installed: apt-get install ffmpeg "
            "(or run scripts/install-system-deps.sh)"
        )
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0?", "-vn"]
    if max_duration_s is not None:
        cmd += ["-t", f"{max_duration_s:.3f}"]
    cmd += ["-ac", "1", "-ar", str(SAMPLE_RATE_HZ), "-f", "s16le", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise MediaError(f"decoding took longer than {timeout_s:.0f} s") from err
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        raise MediaError(_reason(stderr))
    if not proc.stdout:
        if "does not contain any stream" in stderr or not stderr:
            raise MediaError("no audio stream")
        raise MediaError(_reason(stderr))
    return proc.stdout


def _reason(stderr: str) -> str:
    text = stderr.lower()
    if "no such file" in text:
        return "file not found"
    if "does not contain any stream" in text or "matches no streams" in text:
        return "no audio stream"
    if "invalid data" in text or "invalid argument" in text or "could not find codec" in text:
        return "unreadable or unsupported media (not a decodable audio/video file)"
    if "end of file" in text or "truncat" in text or "partial file" in text:
        return "truncated media"
    last = stderr.splitlines()[-1] if stderr else "ffmpeg failed"
    return f"unreadable media: {last[:200]}"


def chromaprint_file(
    path: str | PathLike[str], *, max_duration_s: float | None = None, timeout_s: float = 300.0
) -> AudioFingerprint:
    """Fingerprint the first audio stream of any file ffmpeg reads (audio or video).

    Decodes to 11025 Hz mono s16le (``ffmpeg -i FILE -ac 1 -ar 11025 -f s16le -``) and fingerprints
    the whole stream, or its first ``max_duration_s`` seconds.

    Raises
    ------
    MediaError : unreadable, truncated before any audio, no audio stream, or too short (< ~3 s).
    FingerprintUnavailable : ffmpeg or libchromaprint is missing.
    """
    pcm = decode_audio(path, max_duration_s=max_duration_s, timeout_s=timeout_s)
    return chromaprint_pcm(pcm, SAMPLE_RATE_HZ, 1)


def _as_fingerprint(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"a raw fingerprint is 1-D, got shape {arr.shape}")
    return arr.astype(np.uint32, copy=False)


def bit_error_rate(a: np.ndarray, b: np.ndarray, offset: int = 0) -> float:
    """Fraction of differing bits between two raw fingerprints aligned at ``offset`` items.

    Item ``a[i]`` is compared with ``b[i + offset]`` over the overlap (``offset`` may be negative).
    0.0 is identical audio; unrelated audio gives about 0.5. Chromaprint's comparison measure
    (chromaprint ``src/fingerprint_matcher.cpp``, AcoustID's ``acoustid_compare``).

    Raises
    ------
    ValueError : the fingerprints do not overlap at this offset.
    """
    a, b = _as_fingerprint(a), _as_fingerprint(b)
    start_a, start_b = max(0, -offset), max(0, offset)
    n = min(len(a) - start_a, len(b) - start_b)
    if n <= 0:
        raise ValueError(f"no overlap at offset {offset} (lengths {len(a)}, {len(b)})")
    diff = np.bitwise_xor(a[start_a : start_a + n], b[start_b : start_b + n])
    return float(np.bitwise_count(diff).sum(dtype=np.int64)) / (32.0 * n)


def best_alignment(
    query: np.ndarray,
    reference: np.ndarray,
    max_offset: int | None = None,
    *,
    min_overlap: int | None = None,
) -> tuple[int, float]:
    """The offset (in items) at which ``query`` best matches ``reference``, and its bit error rate.

    Tries every offset in ``[-max_offset, max_offset]`` (all offsets with any overlap when
    ``max_offset`` is None, so a short excerpt is found anywhere in a long reference) whose overlap
    is at least ``min_overlap`` items (default: half the shorter fingerprint), and returns the one
    with the lowest bit error rate; ``query[i]`` aligns with ``reference[i + offset]``. Multiply
    the offset by ``ITEM_DURATION_S`` for seconds. This is the standard Chromaprint matching: BER of
    aligned sub-fingerprints minimised over offsets, as in AcoustID's ``acoustid_compare2``
    (github acoustid/pg_acoustid) and chromaprint's ``FingerprintMatcher``; the usual threshold for
    "same recording" is a BER around 0.15 to 0.35 depending on the degradation.

    Raises
    ------
    ValueError : an empty fingerprint, or no offset in range leaves ``min_overlap`` items.
    """
    q, r = _as_fingerprint(query), _as_fingerprint(reference)
    if len(q) == 0 or len(r) == 0:
        raise ValueError("empty fingerprint")
    if min_overlap is None:
        min_overlap = max(1, min(len(q), len(r)) // 2)
    lo, hi = -(len(q) - min_overlap), len(r) - min_overlap
    if max_offset is not None:
        lo, hi = max(lo, -max_offset), min(hi, max_offset)
    if lo > hi:
        raise ValueError(f"no offset within +/-{max_offset} overlaps by {min_overlap} items")
    best = (0, 2.0)
    for offset in range(lo, hi + 1):
        ber = bit_error_rate(q, r, offset)
        if ber < best[1] or (ber == best[1] and abs(offset) < abs(best[0])):
            best = (offset, ber)
    return best
