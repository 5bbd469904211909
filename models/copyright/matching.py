"""Matching an upload against a ``ReferenceBank``: the thresholds, the per-modality matchers and the
features computed from an upload.

Images
    PDQ of the upload's 8 rotations/flips (``pdq_dihedral``) searched in the bank's PDQ index
    (``PDQBank``, exact multi-index hashing) within ``PDQ_GREY_DISTANCE``. A hit within
    ``PDQ_MATCH_DISTANCE`` with quality >= ``PDQ_MIN_QUALITY`` is conclusive. Otherwise the robust
    stage (ORB + RANSAC, ``models.fingerprints.robust``) verifies candidates: every image reference
    while the bank holds at most ``ROBUST_EXHAUSTIVE_MAX`` of them, else the PDQ-nearest ones, at
    most ``ROBUST_TOP_K`` verifications per upload either way beyond the exhaustive regime.
Video
    Frames sampled about once a second plus keyframes (dark bars trimmed), each PDQ searched among
    the reference frames within ``PDQ_MATCH_DISTANCE``. Per reference, the frame pairs that agree
    on one time offset (within ``VIDEO_OFFSET_TOLERANCE_MS``) are the in-order matches, as in Meta's
    vPDQ; the share of the upload's frames, or of the reference's, that match decides
    (``VIDEO_MATCH_SHARE``). References not confirmed that way go through the robust stage frame by
    frame (at most ``ROBUST_QUERY_FRAMES`` upload frames against at most
    ``ORB_REFERENCE_FRAMES`` reference frames, for at most ``ROBUST_VIDEO_TOP_K`` references).
    The audio track is matched like an audio upload.
Audio
    Chromaprint of the upload aligned against each reference's over all offsets (vectorised bit
    error rate); ``AUDIO_MATCH_BER`` confirms, ``AUDIO_REVIEW_BER`` is borderline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from models.fingerprints import hash_image, probe, sample_frames, trim_borders
from models.fingerprints.robust import MIN_INLIERS, OrbFeatures, orb_features, verify

# ---- thresholds ------------------------------------------------------------------------------

PDQ_MATCH_DISTANCE = 31
"""Meta's PDQ match threshold: Hamming distance <= 31 of 256 bits (ThreatExchange ``pdq/README``,
"PDQ ... hashes within 31 bits are considered a match"). Measured here on 51 COCO photos: JPEG q30,
half size, greyscale and 90 degree rotations stay within 26 bits; unrelated pairs are 98 or more."""

PDQ_GREY_DISTANCE = 47
"""Distances 32-47 are the grey zone: REVIEW unless the robust stage confirms. 47 is the widest
radius the multi-index ``PDQBank`` answers from its index (2 bits per 16-bit substring); unrelated
COCO pairs start at 98, logo-bar copies reach 60."""

PDQ_MIN_QUALITY = 50
"""Meta advises ignoring PDQ matches of images with quality below 50 (flat, near-empty images);
such uploads need robust confirmation (vPDQ drops those frames too)."""

ROBUST_EXHAUSTIVE_MAX = 64
"""While the bank holds at most this many image references, the robust stage verifies every one
(about 2 ms each: at most ~130 ms per upload). Beyond it, only the PDQ-nearest candidates."""

ROBUST_TOP_K = 16
"""Most verifications per image upload beyond the exhaustive regime (PDQ-nearest within
``PDQ_GREY_DISTANCE`` first): ~32 ms."""

ROBUST_WEAK_INLIERS = MIN_INLIERS // 2
"""ORB inliers below the match threshold but this high are weak evidence: REVIEW only when the
metadata names the same reference (unrelated COCO pairs: 99th percentile 8 inliers)."""

VIDEO_MATCH_SHARE = 0.5
"""A video matches a reference when at least half of the upload's sampled frames, or half of the
reference's, match it in order. vPDQ reports both shares and leaves the threshold to the user;
half keeps a short cut (all its frames match) and a longer upload containing the reference (all
the reference's frames match) while one shared shot of a few seconds stays borderline."""

VIDEO_REVIEW_SHARE = 0.25
"""Shares from this up to ``VIDEO_MATCH_SHARE`` are borderline (REVIEW)."""

VIDEO_MIN_FRAMES = 2
"""Matched frames needed besides the share (one frame is one image, not a video copy)."""

VIDEO_OFFSET_TOLERANCE_MS = 1500
"""Frame pairs agree on one time offset when within 1.5 s: uploads are sampled once a second,
references twice, so a true pair is at most ~1 s apart in offset."""

ROBUST_QUERY_FRAMES = 8
"""Upload frames (evenly spaced) the robust stage looks at per video."""

ORB_REFERENCE_FRAMES = 8
"""Reference frames (evenly spaced) that carry ORB features."""

ROBUST_PROBE_FRAMES = 2
"""The robust stage gives up on a video reference when this many upload frames matched none of
its frames: an unrelated reference costs ``2 x ORB_REFERENCE_FRAMES`` verifications (~30 ms)."""

ROBUST_VIDEO_TOP_K = 8
"""Most video references per upload that the robust stage verifies (those with PDQ frame hits
first, then the others while the video bank is that small)."""

REFERENCE_FRAME_INTERVAL_S = 0.5
"""References are sampled twice a second (uploads once), so an upload frame has a reference frame
within 0.25 s."""

AUDIO_MATCH_BER = 0.20
"""Bit error rate of aligned Chromaprints at or below which audio matches. Measured on the real
clips of ../shared/data: MP3 64 kbit/s, volume, 20 dB white noise and excerpts stay under 0.09,
tempo +/-5 % under 0.17; unrelated pairs' best alignment is 0.27 or more (0.4-0.5 typical).
AcoustID's matcher uses a similar cut (``acoustid_compare2``: bits in error under ~0.3 per item)."""

AUDIO_REVIEW_BER = 0.25
"""BER from ``AUDIO_MATCH_BER`` up to this is borderline (REVIEW)."""

AUDIO_WEAK_BER = 0.30
"""Up to this, weak evidence (REVIEW only with a metadata hit)."""

AUDIO_MIN_OVERLAP_ITEMS = 8
"""Aligned sub-fingerprints needed (~1 s): fewer bits give chance alignments a low BER."""


# ---- upload features -------------------------------------------------------------------------


@dataclass
class QueryFrame:
    """A sampled video frame: time (ms), PDQ, PDQ quality, pHash, the (border-trimmed) image, and
    its ORB features computed on first use. A frame rebuilt from a ``ContentFingerprint`` event
    has no image (``None``); the robust stage's probe frames carry their ORB features."""

    t_ms: int
    pdq: bytes
    quality: int
    phash: bytes
    image: Image.Image | None
    _orb: OrbFeatures | None = field(default=None, repr=False)

    @property
    def orb(self) -> OrbFeatures:
        """ORB features (computed from ``image`` on first use).

        Raises
        ------
        ValueError : a frame without image whose features were not given.
        """
        if self._orb is None:
            if self.image is None:
                raise ValueError(f"frame at {self.t_ms} ms has neither image nor ORB features")
            self._orb = orb_features(self.image)
        return self._orb


def video_frames(path, every_s: float = 1.0, max_frames: int = 300) -> tuple[list[QueryFrame], dict]:
    """Sample, trim and PDQ-hash a video's frames (as ``video_fingerprint`` does); also returns
    ffprobe's description. Raises ``MediaError`` for bad media."""
    info = probe(path)
    frames = []
    for t, image in sample_frames(path, every_s=every_s, max_frames=max_frames,
                                  duration_s=info["duration"]):
        trimmed = trim_borders(image)
        h = hash_image(trimmed)
        frames.append(QueryFrame(round(t * 1000), h.pdq, h.pdq_quality, h.phash, trimmed))
    return frames, info


def evenly(items: list, k: int) -> list:
    """At most ``k`` items of ``items``, evenly spaced, first and last included."""
    if len(items) <= k:
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in idx]


# ---- audio alignment -------------------------------------------------------------------------


def align(query: np.ndarray, reference: np.ndarray,
          min_overlap: int = AUDIO_MIN_OVERLAP_ITEMS) -> tuple[int, float, int]:
    """Best alignment of two raw Chromaprints, vectorised over every offset.

    ``query[i]`` aligns with ``reference[i + offset]``; offsets leaving fewer than
    ``min(min_overlap, len(query), len(reference))`` overlapping items are skipped. Same measure as
    ``models.fingerprints.best_alignment`` (bit error rate, minimised over offsets), computed with
    one ``(offsets, len(query))`` popcount instead of a Python loop.

    Returns ``(offset items, bit error rate, overlap items)``; ``(0, 1.0, 0)`` when empty.
    """
    q = np.asarray(query, dtype=np.uint32)
    r = np.asarray(reference, dtype=np.uint32)
    m, n = len(q), len(r)
    if m == 0 or n == 0:
        return 0, 1.0, 0
    need = max(1, min(min_overlap, m, n))
    pad = m - need
    padded = np.concatenate([np.zeros(pad, np.uint32), r, np.zeros(pad, np.uint32)])
    valid = np.concatenate([np.zeros(pad, bool), np.ones(n, bool), np.zeros(pad, bool)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, m)  # (offsets, m)
    vmask = np.lib.stride_tricks.sliding_window_view(valid, m)
    errors = (np.bitwise_count(windows ^ q) * vmask).sum(axis=1, dtype=np.int64)
    counts = vmask.sum(axis=1)
    ber = errors / (32.0 * np.maximum(counts, 1))
    ber[counts < need] = 2.0
    best = int(np.argmin(ber))
    return best - pad, float(ber[best]), int(counts[best])


# ---- metadata --------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("the a an of and or in on at to for by with from feat ft official video audio "
                  "music song track remix live hd mp3 mp4".split())


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) >= 3}


def metadata_text(metadata: dict | None) -> str:
    """Flatten upload metadata (title, caption, hashtags, any string or list of strings)."""
    if not metadata:
        return ""
    parts = []
    for value in metadata.values():
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, (list, tuple)):
            parts.extend(str(v) for v in value)
    return " ".join(parts)


def metadata_words(metadata: dict | None) -> set[str]:
    """Every lower-case word of the upload's metadata (``metadata_text``), stop words included."""
    return set(_WORD.findall(metadata_text(metadata).lower()))


def names_reference(text_words: set[str], title: str, reference_id: str) -> bool:
    """True when every significant word of the reference's title (at least two, or one of six
    letters or more) occurs in the upload's metadata, or its id does. Hashtags count as words
    (``#MyFavouriteSong`` also matches the title run together)."""
    words = _words(title)
    joined = "".join(_WORD.findall(title.lower()))
    if reference_id.lower() in text_words or (len(joined) >= 6 and joined in text_words):
        return True
    if not words or (len(words) == 1 and len(next(iter(words))) < 6):
        return False
    return words <= text_words


def orb_verify_frames(query: list[QueryFrame], reference: list[tuple[int, OrbFeatures]]
                      ) -> tuple[list[tuple[int, int, int]], int]:
    """Robust stage for one video reference: each upload frame (in order) verified against the
    reference frames, nearest in time to the offset found so far first. Stops after
    ``ROBUST_PROBE_FRAMES`` upload frames without a single match.

    Returns ``([(upload t_ms, reference t_ms, inliers)], verifications)``.
    """
    found: list[tuple[int, int, int]] = []
    cost = 0
    for i, frame in enumerate(query):
        if not found and i >= ROBUST_PROBE_FRAMES:
            break
        order = list(range(len(reference)))
        if found:
            offset = int(np.median([rt - qt for qt, rt, _ in found]))
            order.sort(key=lambda j: abs(reference[j][0] - (frame.t_ms + offset)))
            order = order[:3]
        for j in order:
            cost += 1
            result = verify(frame.orb, reference[j][1])
            if result.matched:
                found.append((frame.t_ms, reference[j][0], result.inliers))
                break
    return found, cost
