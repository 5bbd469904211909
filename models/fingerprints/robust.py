"""A second-stage image matcher that survives crops, logo overlays and rotations: ORB keypoints
with a ratio test and RANSAC geometric verification (OpenCV).

PDQ is a global hash: a 10 % crop or a large logo bar moves it far past Meta's match threshold of
31 bits. Local features do not care about what was cut away or covered, as long as enough of the
picture remains. Each image is described by at most ``ORB_MAX_KEYPOINTS`` ORB keypoints (Rublee et
al., "ORB: an efficient alternative to SIFT or SURF", ICCV 2011; ``cv2.ORB_create``) on a copy
resized so its longer side is ``ORB_SIDE`` pixels. Two images are compared by

1. matching each query descriptor to its two nearest reference descriptors (Hamming distance,
   ``cv2.BFMatcher``) and keeping it when the nearest is clearly better than the second
   (Lowe's ratio test, ``RATIO_TEST``; Lowe, IJCV 2004);
2. fitting a similarity transform (rotation, uniform scale, translation:
   ``cv2.estimateAffinePartial2D``) to the kept matches with RANSAC and counting the inliers.

A copy gives many inliers that agree on one transform; unrelated images give a handful of chance
matches that agree on nothing. The score is the inlier count (``MIN_INLIERS`` to match) and the
inlier ratio (inliers / ratio-test matches). Mirrored copies are not found here (ORB descriptors
are not mirror-invariant): PDQ's 8 dihedral variants catch flips.

Cost bound per comparison: extraction is one ORB pass on an image of at most ``ORB_SIDE`` pixels
(a few ms); matching is ``ORB_MAX_KEYPOINTS`` x ``ORB_MAX_KEYPOINTS`` Hamming distances (250,000
popcounts of 256 bits, about 1 ms) plus RANSAC (``RANSAC_MAX_ITERS`` iterations at most). The
caller bounds the number of comparisons per upload (the copyright bank verifies its top-K
candidates only).

Serialised form (``OrbFeatures.to_bytes``; kind "ORB" in a CopyrightReference event): a 12-byte
header ``b"ORB1"``, ``uint16`` keypoint count, width and height (little-endian, pixels of the
resized image), ``uint16`` reserved; then per keypoint x and y as ``uint16`` in 1/16 pixel; then
per keypoint the 32-byte descriptor. 36 bytes a keypoint, at most 18 kB an image.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

ORB_MAX_KEYPOINTS = 500
"""Keypoints kept per image (ORB's strongest by FAST/Harris response). 500 is OpenCV's default;
more adds cost linearly per comparison without helping much on photos of this size."""

ORB_SIDE = 512
"""Images are resized (up or down) so the longer side is this many pixels before extraction, so
a half-size copy is seen at the same scale as its original and cost does not grow with the
upload's resolution."""

RATIO_TEST = 0.8
"""Lowe's ratio test: keep a match when nearest distance < 0.8 x second nearest (Lowe 2004 found
0.8 removes 90 % of false matches while losing under 5 % of correct ones)."""

RANSAC_REPROJ_PX = 8.0
"""RANSAC inlier threshold, pixels at ``ORB_SIDE`` scale. ORB keypoints on coarse pyramid levels
(scale factor 1.2, 8 levels) are located to a few pixels; 8 keeps them after JPEG and rescaling."""

RANSAC_MAX_ITERS = 2000
"""Upper bound on RANSAC iterations (OpenCV's default), which bounds verification cost."""

MIN_INLIERS = 30
"""Inliers of one similarity transform needed to call two images the same picture. Measured on
the 51 COCO photos of ../shared/data (all 1,275 unrelated pairs): unrelated pairs give a median of
3 inliers, 99th percentile 8, at most 18; copies (10 % crop, logo bar over the bottom fifth,
5 degree rotation, 90 degree rotation, JPEG q30, half size, greyscale) give 150 or more. 30 leaves
a wide margin on both sides; ``pulse eval copyright`` re-measures it."""

MIN_INLIER_RATIO = 0.25
"""Inliers / ratio-test matches needed as well: chance matches on repetitive texture can pass the
ratio test in numbers but never agree on one transform."""

SCALE_RANGE = (0.2, 5.0)
"""Accepted scale of the fitted transform (query -> reference, at ``ORB_SIDE``). A copy resized
to fit the same side and cropped at most to a fifth of its side lies inside; degenerate RANSAC
fits on a few clustered points do not."""

_MAGIC = b"ORB1"
_HEADER = struct.Struct("<4sHHHH")


@dataclass(frozen=True)
class OrbFeatures:
    """ORB keypoints of one image.

    Attributes
    ----------
    points : (n, 2) float32 keypoint coordinates (x, y) in pixels of the resized image.
    descriptors : (n, 32) uint8 ORB descriptors (256 bits each).
    width, height : pixels of the resized image (longer side ``ORB_SIDE``).
    """

    points: np.ndarray
    descriptors: np.ndarray
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.points)

    def to_bytes(self) -> bytes:
        """The compact form described in the module docstring (36 bytes a keypoint + 12)."""
        xy = np.clip(np.round(self.points * 16.0), 0, 65535).astype("<u2")
        header = _HEADER.pack(_MAGIC, len(self), self.width, self.height, 0)
        return header + xy.tobytes() + np.ascontiguousarray(self.descriptors, np.uint8).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> OrbFeatures:
        """Inverse of ``to_bytes`` (coordinates rounded to 1/16 pixel).

        Raises
        ------
        ValueError : not an ORB1 blob, or its length does not match its keypoint count.
        """
        if len(data) < _HEADER.size:
            raise ValueError(f"ORB features too short: {len(data)} bytes")
        magic, n, width, height, _ = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError(f"not ORB features: magic {magic!r}, expected {_MAGIC!r}")
        want = _HEADER.size + n * 36
        if len(data) != want:
            raise ValueError(f"ORB features of {n} keypoints take {want} bytes, got {len(data)}")
        xy = np.frombuffer(data, "<u2", count=2 * n, offset=_HEADER.size)
        points = (xy.astype(np.float32) / 16.0).reshape(n, 2)
        desc = np.frombuffer(data, np.uint8, offset=_HEADER.size + 4 * n).reshape(n, 32).copy()
        return cls(points=points, descriptors=desc, width=width, height=height)


@dataclass(frozen=True)
class RobustMatch:
    """Outcome of verifying a query image against one reference.

    Attributes
    ----------
    inliers : matches consistent with the fitted similarity transform.
    good_matches : matches that passed the ratio test.
    inlier_ratio : inliers / good_matches (0.0 when there were none).
    scale, rotation_deg : of the fitted query -> reference transform (1.0, 0.0 when none).
    matched : ``inliers >= MIN_INLIERS`` and ``inlier_ratio >= MIN_INLIER_RATIO`` and the scale
        is within ``SCALE_RANGE``.
    """

    inliers: int
    good_matches: int
    inlier_ratio: float
    scale: float
    rotation_deg: float
    matched: bool

    @property
    def similarity(self) -> float:
        """Match strength in [0, 1]: inliers over ``4 * MIN_INLIERS``, capped at 1 (a copy with
        four times the inliers needed is as certain as this measure gets)."""
        return min(1.0, self.inliers / (4.0 * MIN_INLIERS))


NO_MATCH = RobustMatch(0, 0, 0.0, 1.0, 0.0, False)

_orb = None


def _detector():
    global _orb
    if _orb is None:
        _orb = cv2.ORB_create(nfeatures=ORB_MAX_KEYPOINTS)
    return _orb


def orb_features(
    image: Image.Image | np.ndarray, *, max_keypoints: int = ORB_MAX_KEYPOINTS,
    side: int = ORB_SIDE,
) -> OrbFeatures:
    """ORB keypoints and descriptors of a PIL image or an ``(h, w, 3) uint8`` RGB /
    ``(h, w) uint8`` grey array, after resizing so the longer side is ``side`` pixels.

    A flat image gives few or no keypoints (``len(features) == 0``); it then matches nothing.
    """
    if isinstance(image, Image.Image):
        grey = np.asarray(image.convert("L"))
    else:
        arr = np.asarray(image, dtype=np.uint8)
        grey = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY) if arr.ndim == 3 else arr
    h, w = grey.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("empty image")
    f = side / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    grey = cv2.resize(np.ascontiguousarray(grey), (nw, nh), interpolation=interp)
    orb = _detector() if max_keypoints == ORB_MAX_KEYPOINTS else cv2.ORB_create(max_keypoints)
    keypoints, desc = orb.detectAndCompute(grey, None)
    if desc is None or not keypoints:
        return OrbFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), nw, nh)
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32)
    return OrbFeatures(points=points, descriptors=desc, width=nw, height=nh)


_matcher = cv2.BFMatcher(cv2.NORM_HAMMING)


def verify(query: OrbFeatures, reference: OrbFeatures) -> RobustMatch:
    """Ratio-test matches from ``query`` to ``reference`` and a RANSAC similarity transform over
    them; see the module docstring. Symmetric enough in practice, but run it query -> reference.
    """
    if len(query) < 2 or len(reference) < 2:
        return NO_MATCH
    pairs = _matcher.knnMatch(query.descriptors, reference.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO_TEST * p[1].distance]
    if len(good) < 3:
        return RobustMatch(0, len(good), 0.0, 1.0, 0.0, False)
    src = query.points[[m.queryIdx for m in good]]
    dst = reference.points[[m.trainIdx for m in good]]
    model, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_REPROJ_PX,
        maxIters=RANSAC_MAX_ITERS, confidence=0.995,
    )
    if model is None or mask is None:
        return RobustMatch(0, len(good), 0.0, 1.0, 0.0, False)
    inliers = int(mask.sum())
    a, b = float(model[0, 0]), float(model[1, 0])
    scale = float(np.hypot(a, b))
    rotation = float(np.degrees(np.arctan2(b, a)))
    ratio = inliers / len(good)
    matched = (inliers >= MIN_INLIERS and ratio >= MIN_INLIER_RATIO
               and SCALE_RANGE[0] <= scale <= SCALE_RANGE[1])
    return RobustMatch(inliers, len(good), ratio, scale, rotation, matched)


def best_match(query: OrbFeatures, references: list[OrbFeatures]) -> tuple[int, RobustMatch]:
    """``verify`` against each reference; the index and result with the most inliers
    (``(-1, NO_MATCH)`` for an empty list). Cost: ``len(references)`` verifications."""
    best = (-1, NO_MATCH)
    for i, ref in enumerate(references):
        result = verify(query, ref)
        if result.inliers > best[1].inliers or best[0] < 0:
            best = (i, result)
    return best
