"""Fast text tier: multinomial logistic regression on hashed word and character n-grams.

Features (no vocabulary to store, so the model is its weights): the text is normalised the way
Davidson et al. 2017 pre-process tweets (URLs -> ``URL``, mentions -> ``@USER``, retweet markers and
repeated whitespace dropped, lower case), then

- word 1-2 grams hashed into 2^17 columns, and
- character 2-5 grams within word boundaries (``char_wb``) hashed into 2^18 columns,

each block with sublinear term frequency and L2 norm (scikit-learn ``HashingVectorizer``,
``alternate_sign=False``). A multinomial ``LogisticRegression`` (lbfgs, deterministic) gives the
three class scores (hate, harassment, none); a temperature fitted on the validation split
(Guo et al. 2017, "On Calibration of Modern Neural Networks") calibrates them.

Training also accepts soft targets (distillation): each row is repeated once per class with the
target probability as its sample weight, which makes the log loss the cross-entropy to the soft
target (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network").

Weights are saved as a compressed npz of the non-zero coefficients (float32); ``predict_proba``
costs one sparse dot product.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from models import calibration
import scipy.sparse as sp
import sklearn
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

WORD_FEATURES = 2**17
CHAR_FEATURES = 2**18
N_CLASSES = 3

_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@[\w_]+")
_RT = re.compile(r"\brt\b\s*:?", re.I)
_ENTITY = re.compile(r"&#?\w+;")


def normalise(text: str) -> str:
    """Davidson-style tweet normalisation: URLs, mentions, ``RT``, HTML entities, case, spaces."""
    t = _URL.sub(" URL ", text)
    t = _MENTION.sub(" @USER ", t)
    t = _RT.sub(" ", t)
    t = _ENTITY.sub(" ", t)
    return " ".join(t.lower().split())


class Featurizer:
    """Texts -> ``(n, WORD_FEATURES + CHAR_FEATURES)`` float64 CSR matrix. Stateless, thread-safe."""

    def __init__(self) -> None:
        common = dict(lowercase=False, alternate_sign=False, norm=None, dtype=np.float64)
        self._word = HashingVectorizer(analyzer="word", ngram_range=(1, 2), n_features=WORD_FEATURES,
                                       token_pattern=r"(?u)\b\w+\b|[!?]", **common)
        self._char = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5),
                                       n_features=CHAR_FEATURES, **common)

    @property
    def n_features(self) -> int:
        return WORD_FEATURES + CHAR_FEATURES

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        norm = [normalise(t) for t in texts]
        blocks = []
        # per-call validation costs more than the hashing itself for one short text
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            for vec in (self._word, self._char):
                m = vec.transform(norm)
                m.data = 1.0 + np.log(m.data)  # sublinear term frequency
                _l2_rows(m)                    # L2 per block: word and char blocks weigh the same
                blocks.append(m)
        return sp.hstack(blocks, format="csr")


def _l2_rows(m: sp.csr_matrix) -> None:
    """Scale each row of a CSR matrix to unit L2 norm, in place (empty rows stay zero)."""
    lengths = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), lengths)
    norms = np.sqrt(np.bincount(rows, weights=m.data ** 2, minlength=m.shape[0]))
    norms[norms == 0] = 1.0
    m.data /= np.repeat(norms, lengths)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T > 0 minimising the negative log-likelihood of ``softmax(logits / T)``
    on labels ``y`` (``models.calibration.fit_temperature``, log T in [-3, 3])."""
    return calibration.fit_temperature(logits, y, (-3.0, 3.0))


class FastTextModel:
    """The fast tier's classifier. ``coef`` (3, n_features) float32, ``intercept`` (3,),
    ``temperature`` scalar. ``predict_proba(texts) -> (n, 3)`` float64, rows sum to 1, class order
    hate, harassment, none. Thread-safe for prediction."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, temperature: float = 1.0) -> None:
        self.featurizer = Featurizer()
        # (F, 3) float64: the same dtype as the features, so a product never copies the weights
        self.coef_t = np.ascontiguousarray(np.asarray(coef, np.float32).astype(np.float64).T)
        self.intercept = np.asarray(intercept, np.float64)
        self.temperature = float(temperature)

    @classmethod
    def fit(cls, texts: list[str], targets: np.ndarray, *, C: float = 8.0,
            max_iter: int = 300) -> "FastTextModel":
        """Train on hard labels (``targets`` (n,) int) or soft targets (``(n, 3)`` rows summing to 1)."""
        X = Featurizer().transform(texts)
        return cls.fit_features(X, targets, C=C, max_iter=max_iter)

    @classmethod
    def fit_features(cls, X: sp.csr_matrix, targets: np.ndarray, *, C: float = 8.0,
                     max_iter: int = 300) -> "FastTextModel":
        targets = np.asarray(targets)
        if targets.ndim == 1:
            y, w, Xf = targets, None, X
        else:  # soft targets: one weighted copy of each row per class
            n = X.shape[0]
            Xf = sp.vstack([X] * N_CLASSES, format="csr")
            y = np.repeat(np.arange(N_CLASSES), n)
            w = targets.T.reshape(-1)
            keep = w > 1e-4
            Xf, y, w = Xf[keep], y[keep], w[keep]
        lr = LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs", tol=1e-5)
        lr.fit(Xf, y, sample_weight=w)
        return cls(lr.coef_, lr.intercept_)

    def logits(self, texts: list[str]) -> np.ndarray:
        """(n, 3) uncalibrated logits."""
        return self.logits_features(self.featurizer.transform(texts))

    def logits_features(self, X: sp.csr_matrix) -> np.ndarray:
        return np.asarray(X @ self.coef_t) + self.intercept

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(n, 3) calibrated probabilities (hate, harassment, none)."""
        return softmax(self.logits(texts) / self.temperature)

    def save(self, path: str | Path) -> None:
        """Write ``path`` (npz): non-zero coefficients as (row, col, value float32) + intercept + T."""
        coo = sp.coo_matrix(self.coef_t.T)
        np.savez_compressed(path, row=coo.row.astype(np.uint8), col=coo.col.astype(np.uint32),
                            value=coo.data.astype(np.float32), intercept=self.intercept,
                            temperature=np.float64(self.temperature),
                            n_features=np.int64(WORD_FEATURES + CHAR_FEATURES))

    @classmethod
    def load(cls, path: str | Path) -> "FastTextModel":
        with np.load(path, allow_pickle=False) as z:
            n = int(z["n_features"])
            coef = sp.coo_matrix((z["value"], (z["row"], z["col"])), shape=(N_CLASSES, n)).toarray()
            return cls(coef, z["intercept"], float(z["temperature"]))
