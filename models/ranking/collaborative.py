"""Collaborative candidates: "people who engaged with what you engaged with also engaged with".

An item-item model (item-kNN): implicit's ``CosineRecommender`` (cosine similarity between the
columns of the user x post engagement matrix, the K most similar posts kept per post; Sarwar et
al., "Item-based collaborative filtering recommendation algorithms", WWW 2001) trained on the
engagements read back from the log (:func:`replay.training.engagement_pairs`). It is a
*candidate source* for feed_ranker (source ``COLLABORATIVE``): the posts most similar to the
ones a user engaged with are added to the candidates and then scored by the same relevance
signals as every other candidate (:mod:`models.ranking.relevance`); the collaborative score is
not a ranking signal, so popularity among similar users never outranks relevance.

Engagements (one per user and post, counted): LIKE, COMMENT and SHARE interactions, and replies
(a published post with a parent is its creator's engagement with the parent); never with one's
own post. Views, hides, skips and reports are not co-engagement.

Artifacts are directories in the model registry (:mod:`models.registry`, family
``collaborative``, under ``PULSE_HOME/models/collaborative/<version>/``): ``items.json`` (post
ids, the matrix's order), ``similarity.npz`` (the item x item top-K similarities as CSR arrays
``indptr``, ``indices``, ``data``; no pickle), ``config.json``, ``metrics.json`` and the
registry's ``manifest.json``. :func:`train` also measures the model: leave-latest-out hit@10 of
each user's last engagement against the most-popular posts of the same training data.
"""
from __future__ import annotations

import json
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

FAMILY = "collaborative"
#: Neighbours kept per post (implicit's CosineRecommender K): the matrix is very sparse (a few
#: engagements per user), so 50 rather than the library's 20 keeps posts reachable.
K = 50
#: Holdout evaluation: top-N list length.
HOLDOUT_N = 10


class CollaborativeModelError(ValueError):
    """An artifact that is missing or unreadable; the message names the path and what to do."""


@dataclass
class ItemNeighbours:
    """A trained item-kNN: ``items`` (post ids) and the top-K similarity rows as CSR arrays
    (``indptr`` ``(n+1,)`` int64, ``indices`` int32 into ``items``, ``data`` float32 cosine)."""

    items: list[str]
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    version: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {p: i for i, p in enumerate(self.items)}

    def recommend(self, engaged: Iterable[str], k: int, exclude: Iterable[str] = ()
                  ) -> list[tuple[str, float]]:
        """Up to ``k`` ``(post_id, score)``: the sum of cosine similarities to the ``engaged``
        posts the model knows, best first (ties by post id), without the engaged posts and
        ``exclude``. Rows are summed in item order, so the scores do not depend on the order of
        ``engaged``. Empty when no engaged post is known."""
        rows = sorted({self.index[p] for p in engaged if p in self.index})
        if not rows or k <= 0:
            return []
        scores: dict[int, float] = defaultdict(float)
        for r in rows:
            lo, hi = int(self.indptr[r]), int(self.indptr[r + 1])
            for j, s in zip(self.indices[lo:hi].tolist(), self.data[lo:hi].tolist()):
                scores[j] += s
        skip = set(rows) | {self.index[p] for p in exclude if p in self.index}
        best = sorted(((round(s, 6), self.items[j]) for j, s in scores.items() if j not in skip and s > 0),
                      key=lambda x: (-x[0], x[1]))
        return [(p, s) for s, p in best[:k]]

    # -- artifacts ------------------------------------------------------------------------------

    def save(self, directory: str | Path, *, command: str | None = None,
             metrics: Mapping[str, Any] | None = None,
             training_data: Mapping[str, Any] | None = None) -> dict:
        """Write the artifact into ``directory`` (created) and its registry manifest; returns
        the manifest."""
        from models.registry import write_manifest

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "items.json").write_text(json.dumps(self.items) + "\n", encoding="utf-8")
        np.savez(d / "similarity.npz", indptr=self.indptr.astype(np.int64),
                 indices=self.indices.astype(np.int32), data=self.data.astype(np.float32))
        (d / "config.json").write_text(json.dumps({**self.config, "version": self.version},
                                                  indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (d / "metrics.json").write_text(json.dumps(dict(metrics or {}), indent=2, sort_keys=True) + "\n",
                                        encoding="utf-8")
        return write_manifest(d, family=FAMILY, version=self.version, command=command,
                              training_data=training_data, model_version=model_version(self.version))

    @classmethod
    def load(cls, directory: str | Path) -> "ItemNeighbours":
        """Read an artifact written by :meth:`save`.

        Raises
        ------
        CollaborativeModelError
            A file is missing or unreadable.
        """
        d = Path(directory)
        try:
            items = json.loads((d / "items.json").read_text(encoding="utf-8"))
            config = json.loads((d / "config.json").read_text(encoding="utf-8"))
            with np.load(d / "similarity.npz", allow_pickle=False) as z:
                indptr, indices, data = z["indptr"], z["indices"], z["data"]
        except (OSError, ValueError, KeyError) as exc:
            raise CollaborativeModelError(
                f"no readable collaborative model at {d} ({exc}): train one with "
                f"`pulse train collaborative --version NAME`") from None
        if len(indptr) != len(items) + 1:
            raise CollaborativeModelError(f"{d}: similarity.npz does not match items.json")
        return cls(list(items), indptr, indices, data, version=str(config.get("version", d.name)),
                   config=config)


def model_version(version: str) -> str:
    """What outputs that used the model name it (``item-knn@<version>``)."""
    return f"item-knn@{version}"


def resolve(home: Path, name: str) -> Path:
    """A version name (``PULSE_HOME/models/collaborative/<name>``) or a path -> its directory."""
    p = Path(name)
    return p if (p.is_absolute() or "/" in name) else Path(home) / "models" / FAMILY / name


def fit(pairs: Sequence[tuple[str, str]], k: int = K, version: str = "") -> ItemNeighbours:
    """Train item-kNN on ``(user, post)`` engagements (repeats count). An empty input gives a
    model that knows no post."""
    from implicit.nearest_neighbours import CosineRecommender
    from scipy.sparse import csr_matrix
    from threadpoolctl import threadpool_limits

    users = {u: i for i, u in enumerate(sorted({u for u, _ in pairs}))}
    items = sorted({p for _, p in pairs})
    index = {p: i for i, p in enumerate(items)}
    config = {"kind": "implicit.CosineRecommender", "K": k, "pairs": len(pairs), "users": len(users),
              "items": len(items)}
    if not pairs:
        return ItemNeighbours([], np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32),
                              version=version, config=config)
    counts = Counter((users[u], index[p]) for u, p in pairs)
    rows, cols = zip(*sorted(counts))
    m = csr_matrix((np.asarray([counts[(r, c)] for r, c in zip(rows, cols)], np.float32), (rows, cols)),
                   shape=(len(users), len(items)))
    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model = CosineRecommender(K=k, num_threads=1)
        model.fit(m, show_progress=False)
    sim = model.similarity.tocsr()
    sim.setdiag(0)
    sim.eliminate_zeros()
    sim.sort_indices()
    return ItemNeighbours(items, sim.indptr.astype(np.int64), sim.indices.astype(np.int32),
                          sim.data.astype(np.float32), version=version, config=config)


def holdout_hit_rate(pairs: Sequence[tuple[int, str, str]], n: int = HOLDOUT_N, k: int = K) -> dict:
    """Leave-latest-out: for each user with at least two distinct engaged posts, hold out the
    latest (``(at ms, user, post)``; ties by post id), train on everything else, and count a hit
    when the held-out post is in the user's top ``n`` (the model's recommendations from the
    user's other posts; the baseline: the ``n`` most-engaged posts of the training part the user
    has not engaged with, ties by post id)."""
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for at, u, p in pairs:
        by_user[u].append((at, p))
    held: dict[str, str] = {}
    for u, hist in by_user.items():
        if len({p for _, p in hist}) >= 2:
            at, p = max(hist, key=lambda x: (x[0], x[1]))
            held[u] = p
    train_pairs = [(u, p) for at, u, p in pairs if not (u in held and held[u] == p)]
    if not held:
        return {"holdout_users": 0, f"hit@{n}": None, f"popular_hit@{n}": None}
    model = fit(train_pairs, k)
    popularity = Counter(p for _, p in train_pairs)
    popular = sorted(popularity, key=lambda p: (-popularity[p], p))
    mine: dict[str, set[str]] = defaultdict(set)
    for u, p in train_pairs:
        mine[u].add(p)
    hits = pop_hits = 0
    for u, target in sorted(held.items()):
        recs = [p for p, _ in model.recommend(mine[u], n)]
        hits += target in recs
        pop_hits += target in [p for p in popular if p not in mine[u]][:n]
    total = len(held)
    return {"holdout_users": total, f"hit@{n}": round(hits / total, 4),
            f"popular_hit@{n}": round(pop_hits / total, 4),
            "note": "leave-latest-out on the training data; baseline: most-engaged posts"}


def train(pairs: Sequence[tuple[int, str, str]], version: str, k: int = K) -> tuple[ItemNeighbours, dict]:
    """``(model on every pair, metrics)`` from ``(at ms, user, post)`` engagements."""
    model = fit([(u, p) for _, u, p in pairs], k, version=version)
    metrics = {**holdout_hit_rate(pairs, k=k), "pairs": len(pairs), "users": model.config["users"],
               "items": model.config["items"], "similarities": int(len(model.data)),
               "mean_neighbours": round(len(model.data) / max(1, len(model.items)), 2)}
    if pairs:
        metrics["trained_until_ms"] = max(at for at, _, _ in pairs)
    return model, metrics
