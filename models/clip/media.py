"""Media for clip_ai: decode an upload's image or video keyframes, and score technical quality.

Decoding reuses the fingerprint layer (``models.fingerprints``): Pillow for images (EXIF
orientation applied, decompression-bomb guard) and one ffmpeg run for video frames. Every
decoding failure is a :class:`~models.fingerprints.MediaError` whose message is the reason.

Quality (all scores in [0, 1], higher is better; hand-set curves, documented here, not learned):

- ``resolution``: ``log2(short side / 128) / log2(1080 / 128)``, clipped: 128 px -> 0, 1080p -> 1.
- ``sharpness``: variance of the Laplacian (4-neighbour kernel) of the grey image at 512 px on
  the long side (Pech-Pacheco et al. 2000, "Diatom autofocusing in brightfield microscopy"),
  mapped by ``log10(v) / 3``: 10 -> 0.33 (blurred), 100 -> 0.67, >= 1000 -> 1.
- ``exposure``: ``(1 - |mean luminance - 0.5| / 0.5) * (1 - min(1, 2 * clipped))``, where
  ``clipped`` is the share of pixels at <= 2 % or >= 98 % luminance.
- video ``stillness``: ``1 - min(1, mean |frame difference| / 0.15)`` over consecutive sampled
  frames (64 x 64 grey): 1 for a tripod shot, 0 for constant shake or cuts.
- ``score``: ``0.3 resolution + 0.4 sharpness + 0.3 exposure`` for images; video:
  ``0.25 / 0.35 / 0.25`` and ``0.15 stillness``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image, ImageOps

from models.fingerprints import MediaError


@dataclass(frozen=True)
class Media:
    """Decoded media: RGB ``frames`` (one for an image; keyframes for a video, in time order),
    their times in seconds, and the original width and height in pixels."""

    frames: list[Image.Image]
    times_s: list[float] = field(default_factory=list)
    width: int = 0
    height: int = 0


def media_path(uri: str) -> Path:
    """A ``file://`` URI or a plain path -> ``Path``. Raises ``MediaError`` for other schemes
    (clip_ai reads media from the shared media store, never from the network)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        return Path(uri)
    raise MediaError(f"media URI scheme {parsed.scheme!r} is not readable here (file:// or a path)")


def load_media(uri: str, kind: str, *, keyframes: int = 4, duration_ms: int | None = None) -> Media:
    """Decode an upload's media. ``kind``: ``"IMAGE"`` or ``"VIDEO"`` (the upload's ``kind``).

    Video: ``keyframes`` frames spread over the clip (``duration_ms`` when the upload gives it),
    scaled to at most 512 px. Raises ``MediaError`` (unreadable, missing, not media, no frame).
    """
    path = media_path(uri)
    if not path.is_file():
        raise MediaError(f"media file not found: {path}")
    if kind == "VIDEO":
        from models.fingerprints.video import probe, sample_frames

        info = probe(path)
        duration_s = duration_ms / 1000 if duration_ms else info.get("duration")
        every = max(0.5, (duration_s or 4.0) / keyframes)
        frames = sample_frames(path, every_s=every, include_keyframes=False, max_frames=keyframes,
                               duration_s=duration_s)
        return Media([f for _, f in frames], [t for t, _ in frames],
                     int(info.get("width") or frames[0][1].width), int(info.get("height") or frames[0][1].height))
    from models.fingerprints.image import load_image

    image = load_image(path, apply_exif_orientation=True)
    return Media([image], [0.0], image.width, image.height)


def _grey(image: Image.Image, long_side: int) -> np.ndarray:
    g = ImageOps.grayscale(image)
    scale = long_side / max(g.size)
    if scale < 1:
        g = g.resize((max(1, round(g.width * scale)), max(1, round(g.height * scale))), Image.BILINEAR)
    return np.asarray(g, dtype=np.float32) / 255.0


def laplacian_variance(image: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image at 512 px (pixel values 0..255)."""
    g = _grey(image, 512) * 255.0
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def image_quality(image: Image.Image, width: int | None = None, height: int | None = None) -> dict[str, float]:
    """``{"resolution", "sharpness", "exposure", "laplacian_variance", "score"}`` of one image.

    ``width``/``height``: the original size when ``image`` is a downscaled frame.
    """
    w, h = width or image.width, height or image.height
    resolution = float(np.clip(np.log2(max(min(w, h), 1) / 128) / np.log2(1080 / 128), 0, 1))
    v = laplacian_variance(image)
    sharpness = float(np.clip(np.log10(max(v, 1e-6)) / 3, 0, 1))
    g = _grey(image, 256)
    clipped = float(np.mean((g <= 0.02) | (g >= 0.98)))
    exposure = float(max(0.0, 1 - abs(float(g.mean()) - 0.5) / 0.5) * (1 - min(1.0, 2 * clipped)))
    score = 0.3 * resolution + 0.4 * sharpness + 0.3 * exposure
    return {"resolution": resolution, "sharpness": sharpness, "exposure": exposure,
            "laplacian_variance": v, "score": float(score)}


def stillness(frames: list[Image.Image]) -> float:
    """``1 - min(1, mean |difference| / 0.15)`` over consecutive frames (64 x 64 grey); 1 for < 2 frames."""
    if len(frames) < 2:
        return 1.0
    small = [np.asarray(ImageOps.grayscale(f).resize((64, 64), Image.BILINEAR), dtype=np.float32) / 255
             for f in frames]
    diff = float(np.mean([np.abs(a - b).mean() for a, b in zip(small, small[1:])]))
    return float(1 - min(1.0, diff / 0.15))


def media_quality(media: Media, kind: str) -> dict[str, float]:
    """Quality of decoded media (module docstring): per-frame scores averaged, plus video stillness."""
    per_frame = [image_quality(f, media.width, media.height) for f in media.frames]
    q = {k: float(np.mean([p[k] for p in per_frame])) for k in per_frame[0]}
    if kind == "VIDEO":
        q["stillness"] = stillness(media.frames)
        q["score"] = 0.25 * q["resolution"] + 0.35 * q["sharpness"] + 0.25 * q["exposure"] + 0.15 * q["stillness"]
    return q
