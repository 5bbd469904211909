"""Heavy text tier: a logistic head blending a fine-tuned MiniLM classifier, the Jigsaw BiLSTM's
scores and the fast tier's logits (stacking with a hold-out set, Wolpert 1992; "blending" in the
Netflix Prize sense).

Features of a text, ``(n, 12)`` float64:

- the 3 logits of the fine-tuned all-MiniLM-L6-v2 classifier (``text_finetuned``),
- the logits of the 6 Jigsaw BiLSTM outputs (``encoders.JigsawBiLSTM``),
- the 3 logits of the base (undistilled) fast model.

The fine-tuned classifier and the fast model are trained on the train split, so their scores on
those rows are over-confident; the head is therefore fitted on the validation split, whose rows
neither saw. Features are standardised with the validation mean and standard deviation, then a
multinomial ``LogisticRegression`` (lbfgs) gives the three class scores (hate, harassment, none)
and a temperature calibrates them; training calibrates temperature, hate threshold and uncertain
band on out-of-fold head scores of the validation rows. The BiLSTM's ``threat`` probability is
reported as its own category score (the policy blocks on it). The head lives in ``heavy.npz``, the
fine-tuned classifier in ``finetuned.safetensors`` + ``finetuned.json``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from models.moderation.encoders import JIGSAW_LABELS, JigsawBiLSTM
from models.moderation.text_fast import FastTextModel, softmax
from models.moderation.text_finetuned import FineTunedClassifier

_EPS = 1e-6
HEAVY_FEATURES = "finetuned-minilm(3)+jigsaw(6)+fast-base(3)"
"""Names the stacked features; recorded in an artifact's config and checked when it loads."""


def stack_features(finetuned_logits: np.ndarray, jigsaw: np.ndarray, fast_logits: np.ndarray) -> np.ndarray:
    """Concatenate ``(n, 3)`` fine-tuned logits, ``(n, 6)`` Jigsaw probabilities (as logits) and
    ``(n, 3)`` fast logits into ``(n, 12)`` float64."""
    j = np.clip(jigsaw.astype(np.float64), _EPS, 1 - _EPS)
    return np.hstack([finetuned_logits.astype(np.float64), np.log(j) - np.log1p(-j),
                      fast_logits.astype(np.float64)])


class HeavyHead:
    """The trained head: ``mean``/``std`` (12,), ``coef`` (3, 12), ``intercept`` (3,),
    ``temperature``. ``predict_proba(features) -> (n, 3)``."""

    def __init__(self, mean, std, coef, intercept, temperature: float = 1.0) -> None:
        self.mean, self.std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        self.coef, self.intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
        self.temperature = float(temperature)

    @classmethod
    def fit(cls, features: np.ndarray, y: np.ndarray, C: float = 0.1) -> "HeavyHead":
        mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
        lr = LogisticRegression(C=C, max_iter=2000, solver="lbfgs", tol=1e-6)
        lr.fit((features - mean) / std, y)
        return cls(mean, std, lr.coef_, lr.intercept_)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std) @ self.coef.T + self.intercept

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return softmax(self.logits(features) / self.temperature)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, mean=self.mean, std=self.std, coef=self.coef,
                            intercept=self.intercept, temperature=np.float64(self.temperature))

    @classmethod
    def load(cls, path: str | Path) -> "HeavyHead":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["mean"], z["std"], z["coef"], z["intercept"], float(z["temperature"]))


class HeavyTextModel:
    """Encoders + head. ``scores(texts) -> (probs (n, 3), jigsaw (n, 6))``; the fine-tuned
    classifier (from ``directory``) and the BiLSTM load on first use (a few seconds), once, under a
    lock, so the object can be shared by worker threads.

    Raises
    ------
    encoders.EncoderUnavailable : a package with encoder weights is missing (on first use).
    """

    def __init__(self, head: HeavyHead, base_fast: FastTextModel, directory: str | Path) -> None:
        self.head = head
        self.base_fast = base_fast
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._finetuned: FineTunedClassifier | None = None
        self._jigsaw: JigsawBiLSTM | None = None

    def _encoders(self) -> tuple[FineTunedClassifier, JigsawBiLSTM]:
        with self._lock:
            if self._finetuned is None:
                self._jigsaw = JigsawBiLSTM()
                self._finetuned = FineTunedClassifier.load(self.directory)
            return self._finetuned, self._jigsaw

    def warmup(self) -> None:
        """Load the encoders now rather than on the first text."""
        self.scores(["warm up"])

    def scores(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ft, jig = self._encoders()
        j = jig.scores(texts)
        feats = stack_features(ft.logits(texts), j, self.base_fast.logits(texts))
        return self.head.predict_proba(feats), j


def jigsaw_dict(row: np.ndarray) -> dict[str, float]:
    """One row of Jigsaw probabilities as ``{label: probability}``."""
    return {k: float(v) for k, v in zip(JIGSAW_LABELS, row)}
