"""Versioned moderation artifacts: where they live, what they hold, how they are read.

An artifact is a directory ``models/moderation/artifacts/<version>/`` written by
``pulse train moderation`` (``training.train``):

``config.json``
    version, the command that produced it, the policy version, which fast model is the default
    (``base`` or ``distilled``) and why, each tier's calibrated rule (``routing.TierRule``), the
    split (seed, fractions, row counts) and the encoders' names.
``fast_base.npz`` / ``fast_distilled.npz``
    fast-tier weights (``text_fast.FastTextModel``); the distilled one is absent when training had
    no unlabelled text.
``heavy.npz``
    the heavy tier's head (``text_heavy.HeavyHead``).
``seen_keys.npy``
    uint64 hashes of every text key used in training or validation (``datasets.text_key``), so an
    evaluation can leave out any row the model saw, whatever file it comes from.
``metrics.json``, ``MODEL_CARD.md``
    validation metrics, and the card with the exact command.

No pickle: arrays are ``.npz``/``.npy`` read with ``allow_pickle=False``; the rest is JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_VERSION = "davidson-v2"
"""The shipped version, loaded when no version is named."""


class ModelNotFound(FileNotFoundError):
    """No trained artifact at the named version or path; the message says how to train one."""


def resolve(version: str | Path | None = None) -> Path:
    """Directory of an artifact: ``None`` -> the shipped default, a name -> ``ARTIFACTS_DIR/name``,
    a path (absolute, or containing a separator) -> that directory.

    Raises
    ------
    ModelNotFound : the directory or its ``config.json`` is missing.
    """
    v = DEFAULT_VERSION if version is None or str(version) == "" else str(version)
    p = Path(v)
    d = p if (p.is_absolute() or "/" in v or p.is_dir()) else ARTIFACTS_DIR / v
    if not (d / "config.json").is_file():
        raise ModelNotFound(f"no moderation model at {d}: train one with "
                            f"`pulse train moderation --data labeled_dev.csv --version {p.name}`")
    return d


def read_config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text(encoding="utf-8"))


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def key_hash(keys: list[str]) -> np.ndarray:
    """Text keys (16 hex digits) -> sorted unique uint64."""
    return np.unique(np.array([int(k, 16) for k in keys], dtype=np.uint64))


def save_seen_keys(directory: Path, keys: list[str]) -> None:
    np.save(directory / "seen_keys.npy", key_hash(keys), allow_pickle=False)


def load_seen_keys(directory: Path) -> np.ndarray:
    return np.load(directory / "seen_keys.npy", allow_pickle=False)
