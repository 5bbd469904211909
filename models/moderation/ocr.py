"""Text visible in images and video keyframes: Tesseract OCR (the ``tesseract`` CLI, Debian
``tesseract-ocr`` + ``tesseract-ocr-eng``, LSTM engine, tested with 5.3.0).

One image -> one ``tesseract stdin stdout --psm 11 -l eng tsv`` run: the image goes in as PNG on
stdin, the TSV (one row per word with its confidence, 0-100) comes back on stdout; no temporary
files. Before that the image is made greyscale and rescaled: enlarged (up to ``MAX_UPSCALE``)
when its long side is under ``TARGET_LONG_SIDE`` pixels, since Tesseract reads text best with
glyphs some 20-30 px high, and shrunk to at most ``max_pixels`` pixels. With the pixel cap and a
hard ``timeout_s`` per image (the process is killed after it) and one thread per run
(``OMP_THREAD_LIMIT=1``), the OCR cost of an upload is bounded.

A word counts only when its confidence is at least ``min_confidence`` and it looks like a word
(two or more letters, only apostrophes or hyphens inside; surrounding punctuation stripped):
photos without text give Tesseract's low-confidence guesses at textures, which this drops.

A missing ``tesseract`` binary (or English model) never raises: :func:`ocr_text` returns a result
with ``skipped="ocr unavailable"`` and logs a warning once, so Content Guard still works, without
OCR, on machines that lack it. A run that times out or fails is skipped the same way.

Example
-------
>>> from PIL import Image, ImageDraw
>>> im = Image.new("L", (400, 60), 255)
>>> ImageDraw.Draw(im).text((10, 20), "hello there world", fill=0)
>>> r = ocr_text(im)                                              # doctest: +SKIP
>>> r.words                                                       # doctest: +SKIP
['hello', 'there', 'world']
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from models.moderation.policy import PolicyError

log = logging.getLogger(__name__)

TARGET_LONG_SIDE = 1280
"""Images with a shorter long side (pixels) are enlarged towards it, by at most ``MAX_UPSCALE``."""
MAX_UPSCALE = 2.0
OCR_FRAME_SIDE = 768
"""Video frames are decoded to fit this many pixels when OCR reads them (captions in 720p video
stay about 20 px high)."""
UNAVAILABLE = "ocr unavailable"
ENGINE = "tesseract"

_WORD = re.compile(r"^[^\w]*([A-Za-z][A-Za-z'’\-]*[A-Za-z]|[A-Za-z]{2,})[^\w]*$")
_warned: set[str] = set()


@dataclass(frozen=True)
class OcrConfig:
    """The policy's ``[ocr]`` section (see ``policy.v1.toml``).

    Attributes
    ----------
    enabled : run OCR at all.
    min_words : words (after filtering) needed before the text is moderated.
    min_confidence : Tesseract word confidence, 0-100, below which a word is dropped.
    max_pixels : pixels after rescaling; larger images are shrunk to this.
    timeout_s : wall-clock limit of one Tesseract run, seconds.
    max_keyframes : video keyframes OCR'd per video (evenly spread over the sampled frames).
    psm : Tesseract page segmentation mode: 11 (sparse text: finds text laid over photos, as in
        memes, which 3, the automatic page layout, misses) or 3 for document pages.
    lang : Tesseract language (a ``*.traineddata`` it has).
    """

    enabled: bool = True
    min_words: int = 2
    min_confidence: float = 75.0
    max_pixels: int = 4_000_000
    timeout_s: float = 20.0
    max_keyframes: int = 3
    psm: int = 11
    lang: str = "eng"

    @classmethod
    def from_policy_file(cls, path: str | Path) -> "OcrConfig":
        """The ``[ocr]`` section of a policy file (defaults for what it leaves out; all defaults
        when the file or section is absent).

        Raises
        ------
        PolicyError : an unknown key, or a value of the wrong type or out of range (the message
            names the key).
        """
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("ocr", {})
        except (FileNotFoundError, tomllib.TOMLDecodeError):
            raw = {}
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise PolicyError(f"{path}: unknown key(s) in [ocr]: {', '.join(sorted(unknown))}")
        cfg = cls(**raw)
        if not isinstance(cfg.enabled, bool):
            raise PolicyError(f"{path}: ocr.enabled must be true or false")
        for k in ("min_words", "max_pixels", "max_keyframes", "psm"):
            v = getattr(cfg, k)
            low = 0 if k == "max_keyframes" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise PolicyError(f"{path}: ocr.{k} must be an integer >= {low}, got {v!r}")
        if cfg.psm > 13:
            raise PolicyError(f"{path}: ocr.psm must be a Tesseract page segmentation mode (0-13)")
        if not 0 <= cfg.min_confidence <= 100:
            raise PolicyError(f"{path}: ocr.min_confidence must be in [0, 100]")
        if not cfg.timeout_s > 0:
            raise PolicyError(f"{path}: ocr.timeout_s must be > 0")
        return cfg


@dataclass(frozen=True)
class OcrResult:
    """What OCR read in one image.

    Attributes
    ----------
    text : the kept words joined by spaces, in reading order ("" when none).
    words : the kept words (confidence >= ``min_confidence``, word-like).
    mean_confidence : mean Tesseract confidence (0-100) of the kept words; 0.0 when none.
    ms : wall time of preprocessing plus the Tesseract run, milliseconds.
    skipped : None when OCR ran; otherwise why not (``"ocr unavailable"``, ``"ocr timed out
        after 2.0 s"``, ``"ocr failed: ..."``).
    """

    text: str
    words: list[str] = field(default_factory=list)
    mean_confidence: float = 0.0
    ms: float = 0.0
    skipped: str | None = None


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning(msg)


def tesseract_path() -> str | None:
    """Path of the ``tesseract`` binary, or None when it is not installed."""
    return shutil.which(ENGINE)


def available() -> bool:
    """Whether the ``tesseract`` binary is installed; logs a warning (once) when it is not."""
    if tesseract_path() is None:
        _warn_once("tesseract is not installed (Debian: tesseract-ocr tesseract-ocr-eng); "
                   "text in images is not moderated")
        return False
    return True


@functools.cache
def tesseract_version() -> str:
    """Tesseract's version (``"5.3.0"``), or ``"unknown"``."""
    exe = tesseract_path()
    if exe is None:
        return "unknown"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(r"tesseract\s+v?(\S+)", out.stdout.decode("utf-8", "replace") +
                  out.stderr.decode("utf-8", "replace"))
    return m.group(1) if m else "unknown"


def prepare(image: Image.Image, max_pixels: int) -> Image.Image:
    """Greyscale ("L") copy of ``image`` rescaled for OCR: enlarged by up to ``MAX_UPSCALE`` until
    the long side reaches ``TARGET_LONG_SIDE``, then shrunk to at most ``max_pixels`` pixels."""
    grey = image.convert("L")
    w, h = grey.size
    scale = min(MAX_UPSCALE, max(1.0, TARGET_LONG_SIDE / max(w, h, 1)))
    scale = min(scale, (max_pixels / max(w * h, 1)) ** 0.5)
    if abs(scale - 1.0) > 1e-3:
        size = (max(1, int(w * scale)), max(1, int(h * scale)))  # floor: stays <= max_pixels
        resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
        grey = grey.resize(size, resample)
    return grey


def parse_tsv(tsv: str, min_confidence: float) -> tuple[list[str], list[float]]:
    """Kept words and their confidences from Tesseract's TSV (level 5 rows are words; columns
    ``level ... conf text``, tab-separated, a header first)."""
    words, confs = [], []
    for line in tsv.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 12 or cols[0] != "5":
            continue
        try:
            conf = float(cols[10])
        except ValueError:
            continue
        m = _WORD.match(cols[11].strip())
        if conf >= min_confidence and m:
            words.append(m.group(1))
            confs.append(conf)
    return words, confs


def ocr_text(image: Image.Image, config: OcrConfig | None = None) -> OcrResult:
    """Read the text in a decoded PIL image (any mode). Never raises for a missing or failing
    Tesseract: the result is then empty with ``skipped`` set (and a warning logged once)."""
    cfg = config or OcrConfig()
    t0 = time.perf_counter()

    def skipped(reason: str) -> OcrResult:
        return OcrResult("", [], 0.0, (time.perf_counter() - t0) * 1000, reason)

    if not available():
        return skipped(UNAVAILABLE)
    exe = tesseract_path() or ENGINE
    buf = io.BytesIO()
    prepare(image, cfg.max_pixels).save(buf, format="PNG", compress_level=1)
    cmd = [exe, "stdin", "stdout", "--psm", str(cfg.psm), "-l", cfg.lang, "tsv"]
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        proc = subprocess.run(cmd, input=buf.getvalue(), capture_output=True, timeout=cfg.timeout_s,
                              env=env, check=False)
    except subprocess.TimeoutExpired:
        return skipped(f"ocr timed out after {cfg.timeout_s:g} s")
    except OSError as err:
        _warn_once(f"tesseract could not run: {err}")
        return skipped(UNAVAILABLE)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        msg = err[-1] if err else f"exit status {proc.returncode}"
        if "traineddata" in proc.stderr.decode("utf-8", "replace"):
            _warn_once(f"tesseract has no {cfg.lang!r} model ({msg}); "
                       "text in images is not moderated")
            return skipped(UNAVAILABLE)
        return skipped(f"ocr failed: {msg[:120]}")
    words, confs = parse_tsv(proc.stdout.decode("utf-8", "replace"), cfg.min_confidence)
    return OcrResult(" ".join(words), words, sum(confs) / len(confs) if confs else 0.0,
                     (time.perf_counter() - t0) * 1000)
