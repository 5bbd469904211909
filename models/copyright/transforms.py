"""Transformed copies of reference media for the evaluation: the re-encodes, crops and overlays
people use to slip a registered work past matching (issue 5's list).

Images are transformed with Pillow and saved as JPEG (quality 90 unless the transformation is a
JPEG quality); audio and video with ffmpeg (libmp3lame, libx264, aac). Every function writes
``out_dir/<stem>.<name>.<ext>`` and returns ``{name: path}``.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from models.fingerprints import FingerprintUnavailable, MediaError, load_image, probe

IMAGE_TRANSFORMS = ("jpeg_q30", "jpeg_q50", "half_size", "crop_10pct", "greyscale",
                    "logo_overlay", "rotate_90", "rotate_5deg")
AUDIO_TRANSFORMS = ("mp3_64k", "volume_minus6db", "noise_20db_snr", "excerpt", "tempo_plus5pct",
                    "tempo_minus5pct")
VIDEO_TRANSFORMS = ("low_resolution", "greyscale", "logo_bar", "shorter_cut")

EXCERPT_S = 10.0
"""Length of the audio excerpt (issue 5: "a 10 s excerpt"); references shorter than
``EXCERPT_S / EXCERPT_MAX_SHARE`` get an excerpt of ``EXCERPT_MAX_SHARE`` of their length."""
EXCERPT_MAX_SHARE = 0.6
NOISE_SNR_DB = 20.0


def _logo(image: Image.Image) -> Image.Image:
    """A broadcaster-style logo bar over the bottom fifth: an opaque band with a badge and text."""
    out = image.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    top = int(h * 0.8)
    draw.rectangle((0, top, w, h), fill=(18, 30, 120))
    draw.ellipse((int(w * 0.03), top + int(h * 0.02), int(w * 0.03) + int(h * 0.16),
                  top + int(h * 0.18)), fill=(250, 200, 0))
    draw.text((int(w * 0.25), top + int(h * 0.07)), "REUPLOADED BY @channel", fill=(255, 255, 255))
    return out


def image_variants(path: Path, out_dir: Path) -> dict[str, Path]:
    """The ``IMAGE_TRANSFORMS`` of one image. Raises ``MediaError`` for an unreadable image."""
    image = load_image(str(path))
    w, h = image.size
    dx, dy = round(w * 0.05), round(h * 0.05)
    made = {
        "jpeg_q30": (image, 30),
        "jpeg_q50": (image, 50),
        "half_size": (image.resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS), 90),
        "crop_10pct": (image.crop((dx, dy, w - dx, h - dy)), 90),  # 10 % of each side in all
        "greyscale": (ImageOps.grayscale(image).convert("RGB"), 90),
        "logo_overlay": (_logo(image), 90),
        "rotate_90": (image.transpose(Image.Transpose.ROTATE_90), 90),
        "rotate_5deg": (image.rotate(5, resample=Image.BICUBIC), 90),  # corners cut, filled black
    }
    out = {}
    for name, (img, quality) in made.items():
        target = out_dir / f"{path.stem}.{name}.jpg"
        img.save(target, "JPEG", quality=quality)
        out[name] = target
    return out


def _ffmpeg(*args: str) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FingerprintUnavailable("ffmpeg is not installed: apt-get install ffmpeg")
    proc = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", *args], capture_output=True,
                          timeout=300, check=False)
    if proc.returncode != 0:
        raise MediaError(f"ffmpeg could not transform the file: "
                         f"{proc.stderr.decode('utf-8', 'replace').strip()[-200:]}")


def _duration(path: Path) -> float:
    cmd = [shutil.which("ffprobe") or "ffprobe", "-v", "error", "-show_entries",
           "format=duration", "-of", "csv=p=0", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).stdout
    try:
        return float(out.strip())
    except ValueError as err:
        raise MediaError(f"{path.name}: no duration") from err


def excerpt_window(duration_s: float) -> tuple[float, float]:
    """(start, length) seconds of the excerpt: ``EXCERPT_S`` from a fifth into the track, or
    ``EXCERPT_MAX_SHARE`` of a short track."""
    length = min(EXCERPT_S, duration_s * EXCERPT_MAX_SHARE)
    start = min(duration_s * 0.2, duration_s - length)
    return start, length


def audio_variants(path: Path, out_dir: Path, *, seed: int = 0) -> dict[str, Path]:
    """The ``AUDIO_TRANSFORMS`` of one audio file (or a video's audio track)."""
    stem, src = path.stem, str(path)
    start, length = excerpt_window(_duration(path))
    out = {n: out_dir / f"{stem}.{n}.{'mp3' if n == 'mp3_64k' else 'wav'}"
           for n in AUDIO_TRANSFORMS}
    _ffmpeg("-i", src, "-vn", "-c:a", "libmp3lame", "-b:a", "64k", str(out["mp3_64k"]))
    _ffmpeg("-i", src, "-vn", "-af", "volume=-6dB", str(out["volume_minus6db"]))
    _ffmpeg("-ss", f"{start:.3f}", "-t", f"{length:.3f}", "-i", src, "-vn",
            str(out["excerpt"]))
    _ffmpeg("-i", src, "-vn", "-af", "atempo=1.05", str(out["tempo_plus5pct"]))
    _ffmpeg("-i", src, "-vn", "-af", "atempo=0.95", str(out["tempo_minus5pct"]))
    _noise(path, out["noise_20db_snr"], seed)
    return out


def _noise(path: Path, target: Path, seed: int, rate: int = 22050) -> None:
    """White Gaussian noise at ``NOISE_SNR_DB`` below the signal's mean power."""
    ffmpeg = shutil.which("ffmpeg")
    proc = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1",
                           "-ar", str(rate), "-f", "s16le", "-"], capture_output=True,
                          timeout=300, check=False)
    pcm = np.frombuffer(proc.stdout, np.int16).astype(np.float64)
    if not len(pcm):
        raise MediaError(f"{path.name}: no audio to add noise to")
    power = float(np.mean(pcm ** 2)) or 1.0
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(power / 10 ** (NOISE_SNR_DB / 10)),
                                               len(pcm))
    noisy = np.clip(np.round(pcm + noise), -32768, 32767).astype("<i2")
    with wave.open(str(target), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(noisy.tobytes())


def video_variants(path: Path, out_dir: Path) -> dict[str, Path]:
    """The ``VIDEO_TRANSFORMS`` of one video (H.264 + AAC MP4s)."""
    info = probe(path)
    stem, src = path.stem, str(path)
    enc = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    aud = ["-c:a", "aac", "-b:a", "96k"] if info["has_audio"] else ["-an"]
    out = {n: out_dir / f"{stem}.{n}.mp4" for n in VIDEO_TRANSFORMS}
    height = max(2, int(info["height"] / 2) // 2 * 2)
    _ffmpeg("-i", src, "-vf", f"scale=-2:{height}", *enc, "-crf", "32", *aud,
            str(out["low_resolution"]))
    even = "scale=trunc(iw/2)*2:trunc(ih/2)*2"  # libx264 with yuv420p needs even sizes
    _ffmpeg("-i", src, "-vf", f"{even},format=gray,format=yuv420p", *enc, "-crf", "23", *aud,
            str(out["greyscale"]))
    bar = (f"{even},drawbox=x=0:y=ih*0.78:w=iw:h=ih*0.22:color=0x121e78@1:t=fill,"
           "drawbox=x=iw*0.04:y=ih*0.81:w=iw*0.28:h=ih*0.16:color=0xfac800@1:t=fill")
    _ffmpeg("-i", src, "-vf", bar, *enc, "-crf", "23", *aud, str(out["logo_bar"]))
    d = info["duration"]
    _ffmpeg("-ss", f"{d * 0.25:.3f}", "-t", f"{max(2.0, d * 0.5):.3f}", "-i", src, "-vf", even, *enc,
            "-crf", "23", *aud, str(out["shorter_cut"]))
    return out


def extract_audio_track(path: Path, out_dir: Path) -> Path:
    """A video's audio track as WAV (``<stem>.audio.wav``), to use it as an audio reference."""
    target = out_dir / f"{path.stem}.audio.wav"
    _ffmpeg("-i", str(path), "-vn", "-map", "0:a:0", str(target))
    return target
