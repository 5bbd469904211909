"""Video fingerprints: PDQ and pHash of sampled frames, plus a Chromaprint of the audio track.

Frames are sampled in a single ffmpeg run: about one per ``every_s`` seconds plus every keyframe
(I-frame, at most one per ``_MIN_KEYFRAME_GAP_S``), scaled to fit ``max_side`` pixels, piped as
PNG, and timed by ffmpeg's ``showinfo`` filter. Each frame is hashed with ``hash_image`` (PDQ with
quality, pHash). Videos are compared the way Meta's vPDQ does (github facebook/ThreatExchange
``vpdq/``, "vPDQ: video PDQ"): the share of one video's frames whose PDQ lies within Hamming
distance 31 of some frame of the other (``frame_match_ratio``). vPDQ hashes every frame (or one per
second); sampling one per second plus keyframes keeps the cost bounded for long uploads.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from os import PathLike

import numpy as np
from PIL import Image

from models.fingerprints.audio import AudioFingerprint, chromaprint_file
from models.fingerprints.errors import FingerprintUnavailable, MediaError
from models.fingerprints.image import hash_image

MAX_BYTES = 150 * 2**20
"""Largest file fingerprinted (150 MB, Copyright Guard's upload limit); larger is a MediaError."""

PDQ_MATCH_DISTANCE = 31
"""Meta's suggested PDQ match threshold (Hamming distance <= 31 of 256 bits), also vPDQ's."""

_MIN_KEYFRAME_GAP_S = 0.25
"""A keyframe closer than this to the previous sampled frame is skipped, so all-intra codecs
(MJPEG, ProRes) do not turn "plus keyframes" into "every frame"."""

_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PTS_TIME = re.compile(r"\bpts_time:\s*(-?[0-9.eE+-]+|nan)")

Source = str | PathLike[str]


@dataclass(frozen=True)
class FrameHash:
    """Hashes of one sampled frame.

    Attributes
    ----------
    t_s : presentation time of the frame, seconds from the start of the video.
    pdq : 32 bytes, PDQ's 256 bits (``pdq.hex()`` is Meta's hex form).
    quality : 0-100, PDQ's quality; vPDQ ignores frames below 50 when matching by default.
    phash : 8 bytes, imagehash's 64-bit pHash.
    """

    t_s: float
    pdq: bytes
    quality: int
    phash: bytes


@dataclass(frozen=True)
class VideoFingerprint:
    """Fingerprint of a video file.

    Attributes
    ----------
    frames : sampled frames in time order (about one per second plus keyframes).
    audio : Chromaprint of the first audio track, None when there is none or it is too short
        (under about 3 s) to fingerprint.
    duration_s : seconds, from the container (or the video stream when the container has none).
    width, height : pixels of the video stream as displayed (rotation applied).
    """

    frames: list[FrameHash]
    audio: AudioFingerprint | None
    duration_s: float
    width: int
    height: int


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FingerprintUnavailable(
            f"{name} is not installed: apt-get install ffmpeg "
            "(or run scripts/install-system-deps.sh)"
        )
    return path


def _check_file(path: Source, max_bytes: int | None) -> None:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError as err:
        raise MediaError("file not found") from err
    except OSError as err:
        raise MediaError(f"unreadable file: {err.strerror}") from err
    if size == 0:
        raise MediaError("empty file")
    if max_bytes is not None and size > max_bytes:
        raise MediaError(
            f"file over {max_bytes / 2**20:.0f} MB ({size / 2**20:.1f} MB); not fingerprinted"
        )


def _probe_reason(stderr: str) -> str:
    text = stderr.lower()
    if "moov atom not found" in text or "end of file" in text or "truncat" in text:
        return "truncated or incomplete media (no index / moov atom)"
    if "invalid data" in text or "could not find codec" in text or "unknown format" in text:
        return "unreadable or unsupported media format"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "ffprobe failed"
    return f"unreadable media: {last[:200]}"


def _ffprobe_json(path: Source, timeout_s: float) -> dict:
    cmd = [_tool("ffprobe"), "-v", "error", "-of", "json", "-show_format", "-show_streams",
           str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise MediaError(f"probing took longer than {timeout_s:.0f} s") from err
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise MediaError(_probe_reason(stderr))
    try:
        return json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError as err:
        raise MediaError("unreadable media: ffprobe gave no description") from err


def _rate(text: str | None) -> float:
    try:
        num, _, den = (text or "0/0").partition("/")
        return float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return 0.0


def _rotation(stream: dict) -> int:
    rotate = stream.get("tags", {}).get("rotate")
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            rotate = side["rotation"]
    try:
        return int(float(rotate or 0)) % 360
    except ValueError:
        return 0


def _float(value, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def probe(path: Source, *, max_bytes: int | None = MAX_BYTES, timeout_s: float = 60.0) -> dict:
    """Describe a video file with ``ffprobe -of json``.

    Returns
    -------
    dict with ``duration`` (seconds), ``width``, ``height`` (pixels as displayed, rotation
    applied), ``fps`` (average frame rate, frames per second), ``has_audio`` (bool), ``format``
    (ffmpeg's format name) and ``video_codec``.

    Raises
    ------
    MediaError : missing, empty, over ``max_bytes`` (150 MB), unreadable, truncated or unsupported
        file; a still image; no video stream (cover art of an audio file does not count).
    FingerprintUnavailable : ffprobe is not installed.
    """
    _check_file(path, max_bytes)
    info = _ffprobe_json(path, timeout_s)
    fmt = info.get("format", {})
    format_name = fmt.get("format_name", "")
    streams = info.get("streams", [])
    video = [s for s in streams if s.get("codec_type") == "video"
             and not s.get("disposition", {}).get("attached_pic")]
    if format_name in _IMAGE_FORMATS or format_name.endswith("_pipe"):
        raise MediaError(f"a still image ({format_name}), not a video")
    if not video:
        raise MediaError("no video stream")
    v = video[0]
    width, height = int(v.get("width") or 0), int(v.get("height") or 0)
    if width <= 0 or height <= 0:
        raise MediaError("unreadable video stream: no frame size")
    if _rotation(v) in (90, 270):
        width, height = height, width
    duration = _float(fmt.get("duration"), _float(v.get("duration")))
    return {
        "duration": duration,
        "width": width,
        "height": height,
        "fps": _rate(v.get("avg_frame_rate")) or _rate(v.get("r_frame_rate")),
        "has_audio": any(s.get("codec_type") == "audio" for s in streams),
        "format": format_name,
        "video_codec": v.get("codec_name", ""),
    }


def _split_pngs(data: bytes) -> list[bytes]:
    """Split ffmpeg's ``image2pipe`` PNG stream into files (each ends with an IEND chunk)."""
    out, start = [], 0
    while start < len(data):
        if not data.startswith(_PNG_SIGNATURE, start):
            break
        end = data.find(b"IEND", start)
        if end < 0:
            break
        end += 8  # chunk type + CRC
        out.append(data[start:end])
        start = end
    return out


BORDER_LUMA = 24
"""Rows and columns at the edges whose brightest pixel (Rec. 601 luma, 0-255) is at most this are
letterbox/pillarbox bars and are trimmed before hashing (``trim_borders``)."""


def trim_borders(image: Image.Image, *, threshold: int = BORDER_LUMA,
                 min_keep: float = 0.5) -> Image.Image:
    """Crop uniform dark bars (letterbox, pillarbox) from the edges of a frame.

    A re-upload padded to another aspect ratio is otherwise a different image to PDQ: measured on
    ThreatExchange's pattern clips, the pillarboxed SD copies are 80-95 bits from the original with
    Meta's own vPDQ hashes. Edges are trimmed while a whole row or column stays at or below
    ``threshold``; if that would keep less than ``min_keep`` of either side (a dark frame), the
    frame is returned unchanged.
    """
    luma = np.asarray(image.convert("L"))
    rows = np.flatnonzero(luma.max(axis=1) > threshold)
    cols = np.flatnonzero(luma.max(axis=0) > threshold)
    if len(rows) == 0 or len(cols) == 0:
        return image
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h, w = luma.shape
    if (bottom - top) < min_keep * h or (right - left) < min_keep * w:
        return image
    if (top, bottom, left, right) == (0, h, 0, w):
        return image
    return image.crop((int(left), int(top), int(right), int(bottom)))


def sample_frames(
    path: Source,
    every_s: float = 1.0,
    include_keyframes: bool = True,
    max_frames: int = 300,
    max_side: int = 512,
    *,
    duration_s: float | None = None,
    timeout_s: float = 300.0,
) -> list[tuple[float, Image.Image]]:
    """Decode about one frame per ``every_s`` seconds plus the keyframes, in one ffmpeg run.

    The filter is ``select='isnan(prev_selected_t)+gte(t-prev_selected_t,EVERY)
    +eq(pict_type,PICT_TYPE_I)*gte(t-prev_selected_t,0.25)'`` with ``-vsync vfr``, then
    ``scale`` to fit ``max_side`` x ``max_side`` (aspect kept, never enlarged) and ``showinfo``
    for the timestamps. ``every_s=0`` keeps every frame (vPDQ's default, for references). When
    ``duration_s`` (seconds) is given and ``max_frames`` frames at ``every_s`` would not cover it,
    the interval is stretched so the samples span the whole video.

    Returns
    -------
    ``[(t_seconds, PIL RGB image), ...]`` in time order, at most ``max_frames``.

    Raises
    ------
    MediaError : ffmpeg cannot decode a single frame (unreadable, truncated, not a video).
    FingerprintUnavailable : ffmpeg is not installed.
    """
    if every_s < 0 or max_frames <= 0 or max_side <= 0:
        raise ValueError("every_s must be >= 0; max_frames and max_side positive")
    if duration_s and every_s and duration_s / every_s > max_frames:
        every_s = duration_s / max_frames
    if every_s == 0:  # every frame, as vPDQ hashes a reference
        select = "1"
    else:
        select = f"isnan(prev_selected_t)+gte(t-prev_selected_t\\,{every_s:.6f})"
        if include_keyframes:
            select += (f"+eq(pict_type\\,PICT_TYPE_I)*gte(t-prev_selected_t\\,"
                       f"{min(_MIN_KEYFRAME_GAP_S, every_s):.6f})")
    vf = (f"select={select},"
          f"scale=w='min({max_side}\\,iw)':h='min({max_side}\\,ih)'"
          f":force_original_aspect_ratio=decrease,showinfo")
    cmd = [_tool("ffmpeg"), "-nostdin", "-hide_banner", "-v", "info", "-i", str(path),
           "-map", "0:v:0", "-an", "-sn", "-vf", vf, "-vsync", "vfr",
           "-frames:v", str(max_frames), "-f", "image2pipe", "-c:v", "png", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise MediaError(f"decoding took longer than {timeout_s:.0f} s") from err
    stderr = proc.stderr.decode("utf-8", "replace")
    pngs = _split_pngs(proc.stdout)
    if not pngs:
        errors = "\n".join(line for line in stderr.splitlines()
                           if "showinfo" not in line.lower())
        raise MediaError(_probe_reason(errors) if proc.returncode != 0
                         else "no decodable video frames")
    times = [_float(m.group(1), float("nan")) for line in stderr.splitlines()
             if "Parsed_showinfo" in line and (m := _PTS_TIME.search(line))]
    frames = []
    for i, png in enumerate(pngs):
        t = times[i] if i < len(times) and np.isfinite(times[i]) else i * (every_s or 0.0)
        with Image.open(io.BytesIO(png)) as im:
            frames.append((max(0.0, float(t)), im.convert("RGB")))
    return frames


def video_fingerprint(
    path: Source,
    *,
    every_s: float = 1.0,
    max_frames: int = 300,
    max_bytes: int | None = MAX_BYTES,
    with_audio: bool = True,
    trim: bool = True,
) -> VideoFingerprint:
    """Fingerprint a video file: PDQ and pHash of sampled frames (``sample_frames``) and a
    Chromaprint of its first audio track (``chromaprint_file``).

    Frames are hashed after ``trim_borders`` (dark letterbox/pillarbox bars cropped) unless
    ``trim`` is False; ``every_s`` is the sampling interval in seconds (a reference can be sampled
    more densely than an upload, so the upload's frames find a close neighbour in time).

    Raises
    ------
    MediaError : missing, empty, over 150 MB, unreadable, truncated or unsupported file, a still
        image, no video stream, or no decodable frame. An audio track too short or broken to
        fingerprint is not an error: ``audio`` is then None.
    FingerprintUnavailable : ffmpeg, ffprobe or libchromaprint is missing.
    """
    info = probe(path, max_bytes=max_bytes)
    if every_s == 0 and info["duration"] * info["fps"] > max_frames:
        every_s = info["duration"] / max_frames  # every frame would stop at max_frames: spread out
    frames = [
        FrameHash(t_s=round(t, 3), pdq=h.pdq, quality=h.pdq_quality, phash=h.phash)
        for t, image in sample_frames(path, every_s=every_s, max_frames=max_frames,
                                      duration_s=info["duration"])
        for h in (hash_image(trim_borders(image) if trim else image),)
    ]
    audio = None
    if with_audio and info["has_audio"]:
        try:
            audio = chromaprint_file(path)
        except MediaError:
            audio = None
    duration = info["duration"] or (frames[-1].t_s if frames else 0.0)
    return VideoFingerprint(frames=frames, audio=audio, duration_s=duration,
                            width=info["width"], height=info["height"])


def frame_match_ratio(
    query: VideoFingerprint,
    reference: VideoFingerprint,
    max_distance: int = PDQ_MATCH_DISTANCE,
    *,
    min_quality: int = 0,
) -> float:
    """Share of the query's frames whose PDQ is within ``max_distance`` of some reference frame.

    This is vPDQ's "query match percentage" (github facebook/ThreatExchange ``vpdq/``,
    ``match_two_hash_brute``): a frame matches when any reference frame is within the PDQ threshold
    (31, Meta's). vPDQ reports it both ways; a copy is declared when both shares exceed a threshold
    (for example 80 %). Frames below ``min_quality`` are left out on both sides (vPDQ uses 50).
    Distances are the same Hamming distance as ``image.hamming``, computed for all pairs at once
    with numpy (``(n_query, n_reference)``). Returns 0.0 when no query frame is left.
    """
    q = [f.pdq for f in query.frames if f.quality >= min_quality]
    r = [f.pdq for f in reference.frames if f.quality >= min_quality]
    if not q or not r:
        return 0.0
    qa = np.frombuffer(b"".join(q), np.uint8).reshape(len(q), 32)
    ra = np.frombuffer(b"".join(r), np.uint8).reshape(len(r), 32)
    dist = np.bitwise_count(qa[:, None, :] ^ ra[None, :, :]).sum(axis=2, dtype=np.int32)
    return float((dist.min(axis=1) <= max_distance).mean())


def detect_modality(path: Source, *, max_bytes: int | None = MAX_BYTES) -> str:
    """``"image"``, ``"audio"`` or ``"video"``: what a file is, by its header (Pillow) for still
    images, otherwise by ffprobe.

    A still image (ffmpeg's ``image2``/``*_pipe`` formats, or a file Pillow opens that ffprobe
    does not) is an image; a file with a video stream that is not cover art is a video; a file
    with only audio streams is audio.

    Raises
    ------
    MediaError : missing, empty, over ``max_bytes``, or neither an image nor audio/video.
    FingerprintUnavailable : ffprobe is not installed.
    """
    _check_file(path, max_bytes)
    if _still_image_header(path):  # a header read (~0.1 ms) instead of an ffprobe run (~70 ms)
        return "image"
    try:
        info = _ffprobe_json(path, timeout_s=60.0)
    except MediaError:
        if _pillow_opens(path):
            return "image"
        raise
    format_name = info.get("format", {}).get("format_name", "")
    streams = info.get("streams", [])
    if format_name in _IMAGE_FORMATS or format_name.endswith("_pipe"):
        return "image"
    if any(s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
           for s in streams):
        return "video"
    if any(s.get("codec_type") == "audio" for s in streams):
        return "audio"
    if _pillow_opens(path):
        return "image"
    raise MediaError("unsupported media: no image, audio or video stream")


def _still_image_header(path: Source) -> bool:
    """Pillow recognises the file's header as a still (not animated) image; the pixels are not
    decoded, so a truncated image still counts (its decoding fails later with a reason)."""
    try:
        with Image.open(path) as im:
            return not getattr(im, "is_animated", False)
    except Exception:  # noqa: BLE001 - not an image header Pillow knows: ask ffprobe
        return False


def _pillow_opens(path: Source) -> bool:
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not an image Pillow reads"
        return False
