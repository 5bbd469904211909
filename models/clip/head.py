"""A trained category head: platform categories from clip_ai's frozen embeddings.

The light retraining path of issue 6: instead of fine-tuning a tower, a multinomial logistic
regression (scikit-learn's ``LogisticRegression``, lbfgs) is fitted on the vectors clip_ai already
computes for every post, using the platform's own labelled posts (``pulse train clip``). Inputs,
concatenated in this order (:data:`FEATURES`; a head names the blocks it was trained on):

- ``semantic``: the media in MiniLM space (ImageNet bridge), or a text post's MiniLM vector (384-d);
- ``text``: MiniLM embedding of title + caption (384-d; zeros when the post has no text);
- ``image``: the image tower's embedding (EfficientNet-Lite0's 1280-d features, or CLIP's;
  zeros for a text post).

Features are centred on the training mean (``scale`` is kept in the format and is 1: the blocks
are unit vectors, and per-dimension standardisation measured no better and fitted slower); the
probabilities are ``softmax(((x - mean) / scale @ coef.T + intercept) / temperature)``, where the
temperature is fitted on out-of-fold predictions of the training set (temperature scaling, Guo
et al. 2017, "On Calibration of Modern Neural Networks"), so the head's probabilities are
calibrated as well as the data allows. Inference is numpy only.

Artifact: a directory (default ``models/clip/artifacts/<version>/``) holding ``head.npz``
(``coef (c, d)``, ``intercept (c,)``, ``mean (d,)``, ``scale (d,)``, all float32; read with
``allow_pickle=False``), ``config.json`` (version, classes, feature blocks and widths,
temperature, the encoder versions the features came from, the command), ``metrics.json`` and
``MODEL_CARD.md``. No pickle anywhere.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from models import calibration
from models.clip.imagenet import file_version

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
"""Where ``pulse train clip`` writes versions by default; ``PULSE_CLIP_CATEGORY_HEAD=<name>`` looks here."""
FEATURES = ("semantic", "text", "image")
FORMAT = "pulse-clip-category-head/1"


class HeadNotFound(FileNotFoundError):
    """No category head at the named version or path (the message says how to train one)."""


class HeadMismatch(ValueError):
    """The head was trained on embeddings of other encoders (or widths) than the loaded ones."""


def resolve_head(name_or_path: str | Path) -> Path:
    """Directory of a head: a path (absolute, containing ``/``, or an existing directory) as is,
    else a version name under :data:`ARTIFACTS_DIR`. Raises :class:`HeadNotFound`."""
    s = str(name_or_path)
    p = Path(s)
    d = p if (p.is_absolute() or "/" in s or p.is_dir()) else ARTIFACTS_DIR / s
    if not (d / "config.json").is_file() or not (d / "head.npz").is_file():
        raise HeadNotFound(f"no category head at {d} (config.json and head.npz); train one with "
                           f"`pulse train clip --dataset DIR --version {p.name}` (PULSE_CLIP_CATEGORY_HEAD)")
    return d


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def feature_matrix(features: Mapping[str, int], blocks: Mapping[str, Sequence[np.ndarray | None]]) -> np.ndarray:
    """``(n, sum of widths) float32``: the ``features`` blocks (``{name: width}``, in order) of
    ``n`` posts, from per-block lists of ``(width,)`` vectors or ``None`` (-> zeros).

    Raises ``ValueError`` when a block is missing or the lists differ in length,
    :class:`HeadMismatch` when a vector has another width.
    """
    n = {len(blocks[name]) for name in features if name in blocks}
    if len(n) > 1:
        raise ValueError(f"feature blocks have different lengths {sorted(n)}")
    rows = n.pop() if n else 0
    out = np.zeros((rows, int(sum(features.values()))), np.float32)
    col = 0
    for name, width in features.items():
        if name not in blocks:
            raise ValueError(f"the head needs feature block {name!r}")
        for i, v in enumerate(blocks[name]):
            if v is None:
                continue
            v = np.asarray(v, np.float32)
            if v.shape != (width,):
                raise HeadMismatch(f"feature {name!r} has shape {v.shape}; the head was trained on ({width},)")
            out[i, col:col + width] = v
        col += width
    return out


@dataclass
class CategoryHead:
    """A fitted head. ``features``: ``{block name: width}`` in :data:`FEATURES` order;
    ``encoders``: ``{block name: version of the model that produced it}`` (checked on load)."""

    classes: tuple[str, ...]
    features: dict[str, int]
    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    temperature: float = 1.0
    encoders: dict[str, str] = field(default_factory=dict)
    name: str = "category-head"
    version: str = "category-head"
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(sum(self.features.values()))

    def feature_matrix(self, blocks: Mapping[str, Sequence[np.ndarray | None]]) -> np.ndarray:
        """:func:`feature_matrix` for this head's blocks."""
        return feature_matrix(self.features, blocks)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """``(n, dim)`` features -> ``(n, c)`` temperature-scaled logits."""
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must be (n, {self.dim}), got {x.shape}")
        return (((x - self.mean) / self.scale) @ self.coef.T + self.intercept) / self.temperature

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, dim)`` features -> ``(n, c) float32`` class probabilities (rows sum to 1), columns in ``classes`` order."""
        return _softmax(self.logits(x).astype(np.float64)).astype(np.float32)

    def check_encoders(self, encoders: Mapping[str, str], widths: Mapping[str, int]) -> None:
        """Raise :class:`HeadMismatch` unless every block's encoder version and width match the loaded models'."""
        for name, width in self.features.items():
            if widths.get(name) != width:
                raise HeadMismatch(f"category head {self.version}: block {name!r} is {width}-d, the loaded "
                                   f"models give {widths.get(name)}-d; retrain it (pulse train clip)")
            want, got = self.encoders.get(name), encoders.get(name)
            if want and got and want != got:
                raise HeadMismatch(f"category head {self.version} was trained on {name!r} vectors of {want}; "
                                   f"the loaded model is {got}: retrain it (pulse train clip) or unset "
                                   f"PULSE_CLIP_CATEGORY_HEAD")

    # ---- persistence
    def save(self, directory: Path | str, *, extra_config: Mapping[str, Any] | None = None) -> Path:
        """Write ``head.npz`` and ``config.json`` into ``directory`` (created); sets ``version``
        to ``"<name>-<first 12 hex of head.npz's SHA-256>"``. Returns the directory."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.savez(d / "head.npz", coef=self.coef.astype(np.float32), intercept=self.intercept.astype(np.float32),
                 mean=self.mean.astype(np.float32), scale=self.scale.astype(np.float32))
        self.version = file_version(d / "head.npz", self.name)
        self.config = {"format": FORMAT, "name": self.name, "version": self.version, "classes": list(self.classes),
                       "features": self.features, "temperature": self.temperature, "encoders": self.encoders,
                       **dict(extra_config or {})}
        (d / "config.json").write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, name_or_path: str | Path) -> "CategoryHead":
        """Load a head by version name or directory (:func:`resolve_head`).

        Raises :class:`HeadNotFound`, or ``ValueError`` for a malformed artifact (unknown format,
        arrays that do not fit the config).
        """
        d = resolve_head(name_or_path)
        config = json.loads((d / "config.json").read_text(encoding="utf-8"))
        if config.get("format") != FORMAT:
            raise ValueError(f"{d}/config.json: format {config.get('format')!r}, expected {FORMAT!r}")
        with np.load(d / "head.npz", allow_pickle=False) as z:
            arrays = {k: z[k].astype(np.float32) for k in ("coef", "intercept", "mean", "scale")}
        features = {k: int(v) for k, v in config["features"].items()}
        classes = tuple(config["classes"])
        dim = sum(features.values())
        if arrays["coef"].shape != (len(classes), dim) or arrays["intercept"].shape != (len(classes),) \
                or arrays["mean"].shape != (dim,) or arrays["scale"].shape != (dim,):
            raise ValueError(f"{d}/head.npz does not fit config.json ({len(classes)} classes, {dim} features)")
        head = cls(classes, features, temperature=float(config.get("temperature", 1.0)),
                   encoders=dict(config.get("encoders", {})), name=config.get("name", "category-head"),
                   config=config, **arrays)
        head.version = file_version(d / "head.npz", head.name)
        return head


def fit_head(x: np.ndarray, y: Sequence[str], features: Mapping[str, int], *, c: float = 1.0,
             temperature: float = 1.0, encoders: Mapping[str, str] | None = None, name: str = "category-head",
             seed: int = 0) -> CategoryHead:
    """Fit a multinomial logistic regression on ``(n, dim)`` features and labels ``y``.

    ``c``: inverse L2 strength (scikit-learn's ``C``); ``temperature``: from
    :func:`fit_temperature`. Raises ``ValueError`` with fewer than two classes.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, np.float32)
    classes = tuple(sorted(set(y)))
    if len(classes) < 2:
        raise ValueError(f"a category head needs at least two categories in its training rows, got {classes}")
    mean = x.mean(axis=0)
    scale = np.ones_like(mean)  # the blocks are unit vectors already; per-dimension scaling amplified noise (see train.py)
    lr = LogisticRegression(C=c, max_iter=500, random_state=seed)
    lr.fit((x - mean) / scale, list(y))
    assert tuple(lr.classes_) == classes
    coef, intercept = lr.coef_, lr.intercept_
    if len(classes) == 2:  # scikit-learn's binary model is one logit z for classes[1]: softmax([-z/2, z/2]) = sigmoid(z)
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    return CategoryHead(classes, dict(features), coef.astype(np.float32), intercept.astype(np.float32),
                        mean.astype(np.float32), scale.astype(np.float32), float(temperature),
                        dict(encoders or {}), name=name, version=name)


def fit_temperature(logits: np.ndarray, y_index: np.ndarray, bounds: tuple[float, float] = (0.25, 4.0)) -> float:
    """The temperature ``T`` minimising the negative log-likelihood of ``softmax(logits / T)``
    (``models.calibration.fit_temperature``; Guo et al. 2017), within ``bounds``: on small,
    separable data every out-of-fold prediction is right and the likelihood keeps improving as
    ``T -> 0``, which would make the head claim certainty it has not earned."""
    return calibration.fit_temperature(logits, y_index,
                                       (float(np.log(bounds[0])), float(np.log(bounds[1]))))
