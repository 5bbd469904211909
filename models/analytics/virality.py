"""Predicted virality: an online regressor from a post's early signals to its final engagement.

The regressor is river's ``linear_model.BayesianLinearRegression`` (Bishop 2006, *Pattern
Recognition and Machine Learning*, eqs. 3.50-3.51 and 3.58: a Gaussian prior on the weights with
precision ``alpha``, noise precision ``beta``, updated exactly one example at a time by
Sherman-Morrison rank-1 updates). It suits a stream of a few hundred matured posts: no learning
rate to tune, and the posterior after n examples does not depend on their order beyond float
rounding. Input: :data:`models.analytics.signals.FEATURES` of a post at the early horizon.
Target: the *growth* from the horizon to maturity, :func:`models.analytics.signals.label` minus
:func:`models.analytics.signals.early_engagement` (both on the log1p scale of net endorsements);
the prediction of the final engagement is the early engagement plus the predicted growth. The
prior shrinks the growth toward 0, so a model that has seen nothing (and the cold start, before
:data:`MIN_LEARNED` posts) predicts "no growth", and the first predictions move smoothly away
from it.

State (:meth:`ViralityModel.to_state`) is JSON, not a pickle: the model's natural parameters
(the posterior precision matrix, its inverse and ``beta * sum(y x)``, float64 lists, which JSON
round-trips exactly) and the feature order. Restoring them gives a model whose every later
update and prediction is bit-identical to the never-serialised one (a unit test checks this for
the pinned river version), so a replay reproduces every prediction.

``virality`` (:meth:`ViralityModel.virality`) turns a prediction into [0, 1]: the share of the
last :data:`RECENT_LABELS` matured posts whose final engagement was below the predicted one (the
empirical CDF; 0.5 for a tie), so 0.99 reads "predicted to end in the top 1 % of recent posts".
"""
from __future__ import annotations

import bisect
from typing import Any, Mapping

import numpy as np
from river import linear_model

#: Weight prior precision and noise precision of the regressor (river's defaults; the log1p
#: targets have a standard deviation near 1).
ALPHA, BETA = 1.0, 1.0
#: Matured posts a model must have learned before its predictions replace the cold-start one.
MIN_LEARNED = 20
#: Final engagements kept for :meth:`ViralityModel.virality` (the most recent ones).
RECENT_LABELS = 1000


class ViralityModel:
    """The online regressor and the recent labels (module docstring).

    Parameters
    ----------
    alpha, beta:
        Prior and noise precision (:data:`ALPHA`, :data:`BETA`).
    """

    def __init__(self, alpha: float = ALPHA, beta: float = BETA):
        self.model = linear_model.BayesianLinearRegression(alpha=alpha, beta=beta)
        self.learned = 0
        self.labels: list[float] = []   # most recent last

    # -- state ---------------------------------------------------------------------------------

    @classmethod
    def from_state(cls, value: Mapping[str, Any] | None) -> "ViralityModel":
        """The model :meth:`to_state` stored (None: a new one).

        Raises
        ------
        ValueError
            A stored value whose matrices do not match its feature count.
        """
        if not value:
            return cls()
        out = cls(float(value["alpha"]), float(value["beta"]))
        m = out.model
        cap = int(value["cap"])
        names = list(value["features"])
        if cap < len(names) or len(value["ss"]) != cap * cap or len(value["eta"]) != cap:
            raise ValueError("virality model state: matrix shapes do not match its features")
        if cap:
            m._idx = {f: i for i, f in enumerate(names)}
            m._cap = cap
            m._ss_arr = np.asarray(value["ss"], dtype=np.float64).reshape(cap, cap)
            m._ss_inv_arr = np.asfortranarray(np.asarray(value["ss_inv"], dtype=np.float64).reshape(cap, cap))
            m._eta_arr = np.asarray(value["eta"], dtype=np.float64)
            m._m_dirty = True
        out.learned = int(value.get("learned", 0))
        out.labels = [float(y) for y in value.get("labels", ())]
        return out

    def to_state(self) -> dict[str, Any]:
        """``{"alpha", "beta", "features": [names in index order], "cap": n, "ss": n*n floats,
        "ss_inv": n*n floats, "eta": n floats, "learned": int, "labels": [floats]}``."""
        m = self.model
        names = sorted(m._idx, key=m._idx.__getitem__)
        return {"alpha": float(m.alpha), "beta": float(m.beta), "features": names, "cap": int(m._cap),
                "ss": m._ss_arr.ravel().tolist(), "ss_inv": np.asarray(m._ss_inv_arr).ravel().tolist(),
                "eta": m._eta_arr.tolist(), "learned": self.learned, "labels": list(self.labels)}

    # -- learning and predicting --------------------------------------------------------------

    def learn(self, x: Mapping[str, float], y: float, base: float) -> None:
        """Learn one matured post: features ``x`` at its horizon, final engagement ``y``, and
        ``base``, what it already had at the horizon (same scale): the regressor learns the
        growth ``y - base``."""
        self.model.learn_one(dict(x), float(y) - float(base))
        self.learned += 1
        self.labels.append(float(y))
        if len(self.labels) > RECENT_LABELS:
            del self.labels[:len(self.labels) - RECENT_LABELS]

    @property
    def ready(self) -> bool:
        """Whether the model has learned :data:`MIN_LEARNED` posts."""
        return self.learned >= MIN_LEARNED

    def predict(self, x: Mapping[str, float], base: float) -> float:
        """Predicted final engagement (log1p scale): ``base`` (what the post has at the horizon)
        plus the predicted growth, which is 0 until :attr:`ready`."""
        if not self.ready:
            return float(base)
        return float(base) + float(self.model.predict_one(dict(x)))

    def virality(self, predicted: float) -> float | None:
        """The share of recent final engagements below ``predicted`` (ties count half); None
        before any post matured."""
        if not self.labels:
            return None
        ys = sorted(self.labels)
        lo = bisect.bisect_left(ys, predicted)
        hi = bisect.bisect_right(ys, predicted)
        return (lo + 0.5 * (hi - lo)) / len(ys)

    def weights(self) -> dict[str, float]:
        """The posterior mean weight of each feature (for reports)."""
        m = self.model
        if not m._idx:
            return {}
        m._ensure_m()
        return {f: float(m._m_arr[i]) for f, i in sorted(m._idx.items(), key=lambda kv: kv[1])}
