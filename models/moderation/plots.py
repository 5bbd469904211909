"""Pictures of a moderation evaluation (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def hate_precision_recall(path: str | Path, y: np.ndarray, curves: dict[str, np.ndarray],
                          points: dict[str, tuple[float, float]], title: str) -> Path:
    """Write a PNG of hate-class precision-recall curves.

    ``y``: (n,) labels (0 = hate); ``curves``: name -> (n,) hate scores, each drawn as its curve
    over all thresholds; ``points``: name -> (recall, precision) operating points. Returns the
    path written.

    Raises
    ------
    OSError : the file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=120)
    is_hate = np.asarray(y) == 0
    for name, score in curves.items():
        prec, rec, _ = precision_recall_curve(is_hate, score)
        ap = average_precision_score(is_hate, score)
        ax.plot(rec, prec, lw=1.6, label=f"{name} (AP {ap:.3f})")
    markers = iter("o^sDvP*X")
    for name, (r, p) in points.items():
        ax.plot([r], [p], next(markers, "o"), ms=9, label=f"{name}: R {r:.2f} / P {p:.2f}")
    ax.axhline(0.44, color="grey", lw=0.8, ls=":")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("hate recall")
    ax.set_ylabel("hate precision")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper right")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
