"""``pulse eval ranking-fit``: how feed_ranker's relevance weights were chosen, reproducibly.

A grid search over the trade-offs of :mod:`models.ranking.relevance` on the engagements of a
history's *warm-up* period only (the days ``pulse eval ranking`` replays but never scores), with
offline stand-ins for the agents' signals, so that the whole grid (1,920 configurations) runs in
minutes (13 in its last run, on 2 cores shared with an evaluation):

* **novelty**: ``2 ** (-age_h / half_life_h)`` for each grid half-life (the signal itself);
* **interest**: cosine of the post's MiniLM text vector (the encoder clip_ai uses for text) with
  the user's decayed, weighted mean of engaged posts' vectors (answer and comment 1.0, like 0.7,
  own post 0.5; half-life 14 days: :mod:`models.profiles.interests`' weights), below 0 -> 0;
* **reply**: 1 when the post's parent is the user's;
* **hashtag**: the share of the user's earlier engagements (questions asked, answered,
  commented, liked) carrying each of the post's topic tags (its own, or its question's), mean
  over the tags (the profiler's affinity without weights and decay);
* **top_level**: 1 when the post is not a reply (a question, not an answer);
* **following**: 1 when the user follows the creator.

The score is ``novelty + sum(w[s] * signal[s])`` (weights relative to novelty's, the way
:data:`~models.ranking.relevance.WEIGHTS` were then scaled); the pool is what ``pulse eval
ranking`` ranks (posts published in the 30-day horizon, not the user's own, not interacted
with); ties newest first. NDCG@10 over the warm-up engagements picks the winner; the evaluation
period's NDCG@10 of every configuration is printed too, for transparency, never for choosing.
Moderation is not run here: every post counts as FULL (on the Stack Exchange history the gates
restrict almost nothing: ``docs/feeds.md``).
"""
from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from streams.bench.ranking import extract_engagements, ndcg_at
from streams.contracts.agent import ms_of

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
HORIZON_MS = 30 * DAY_MS
#: Engagements in the first days have (almost) nothing to rank against; they are skipped.
BURN_IN_MS = 3 * DAY_MS
PROFILE_WEIGHTS = {"ANSWER": 1.0, "COMMENT": 1.0, "LIKE": 0.7, "OWN_POST": 0.5}
PROFILE_HALF_LIFE_MS = 14 * DAY_MS
HISTORY = 256
GRID: dict[str, tuple[float, ...]] = {
    "novelty_half_life_h": (12.0, 24.0, 48.0, 96.0, 336.0),
    "interest": (0.0, 0.1, 0.3, 0.5),
    "reply": (0.0, 0.3, 0.7, 1.0),
    "top_level": (0.0, 0.2, 0.4, 0.6),
    "hashtag": (0.0, 0.1, 0.3),
    "following": (0.0, 0.1),
}


@dataclass
class Case:
    """One engagement's pool as feature columns (newest first) and the engaged post's index."""

    period: str            # "warmup" | "evaluation"
    age_h: np.ndarray
    signals: dict[str, np.ndarray]
    target: int | None     # None: the engaged post is outside the pool (a miss for any ranker)


def _rank(score: np.ndarray, i: int) -> int:
    """1-based rank of entry ``i``, ties broken by position (the pool is newest first)."""
    return 1 + int(np.sum(score > score[i])) + int(np.sum(score[:i] == score[i]))


def ndcg(cases: Sequence[Case], cfg: Mapping[str, float]) -> float:
    """Mean NDCG@10 of ``cfg`` over ``cases`` (a target outside the pool scores 0)."""
    if not cases:
        return 0.0
    total = 0.0
    for c in cases:
        if c.target is None:
            continue
        s = np.exp2(-c.age_h / cfg["novelty_half_life_h"])
        for name, col in c.signals.items():
            w = cfg.get(name, 0.0)
            if w:
                s = s + w * col
        total += ndcg_at(_rank(s, c.target))
    return total / len(cases)


def build_cases(history: Sequence[tuple[str, dict]], encode: Callable[[list[str]], np.ndarray],
                warmup_days: float, anonymous_user_id: str | None) -> list[Case]:
    """Replay ``history`` (``(event_type, record)`` in time order) and collect one :class:`Case`
    per engagement (:func:`streams.bench.ranking.extract_engagements`) after the burn-in.
    ``encode(texts) -> (n, d)`` embeds the posts' title + caption."""
    uploads = [r for et, r in history if et == "upload"]
    texts = [" ".join(x for x in (r.get("title") or "", r.get("caption") or "") if x.strip()).strip()
             for r in uploads]
    vectors = np.asarray(encode(texts), dtype=np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    row = {r["post_id"]: i for i, r in enumerate(uploads)}
    engagements, _ = extract_engagements(history, anonymous_user_id)
    by_event = {e.event_id: e for e in engagements}
    start = ms_of(history[0][1]["event_time"])
    warm_end = start + int(warmup_days * DAY_MS)
    posts: dict[str, tuple[int, str, str | None]] = {}   # post -> (published ms, creator, parent)
    order: list[str] = []
    tags: dict[str, list[str]] = {}
    seen: dict[str, set] = defaultdict(set)
    tag_counts: dict[str, Counter] = defaultdict(Counter)
    engaged_n: Counter = Counter()
    follows: dict[str, set] = defaultdict(set)
    engaged: dict[str, list] = defaultdict(list)           # user -> [(ms, post, weight)]
    cases: list[Case] = []

    def user_vector(user: str, t: int) -> np.ndarray | None:
        h = engaged.get(user, [])[-HISTORY:]
        if not h:
            return None
        w = np.asarray([wt * 2.0 ** (-(t - at) / PROFILE_HALF_LIFE_MS) for at, _, wt in h])
        v = (w[:, None] * vectors[[row[p] for _, p, _ in h]]).sum(axis=0)
        n = float(np.linalg.norm(v))
        return v / n if n else None

    def engage(user: str, post: str, t: int, kind: str) -> None:
        tag_counts[user].update(tags.get(post, ()))
        engaged_n[user] += 1
        if post in row:
            engaged[user].append((t, post, PROFILE_WEIGHTS[kind]))

    for event_type, r in history:
        t = ms_of(r["event_time"])
        e = by_event.get(r["event_id"])
        if e is not None and t >= start + BURN_IN_MS and e.post_id in posts \
                and e.post_id not in seen[e.user_id]:
            pool = [p for p in reversed(order) if t - posts[p][0] <= HORIZON_MS
                    and posts[p][1] != e.user_id and p not in seen[e.user_id]]
            u = e.user_id
            vec = user_vector(u, t)
            n_eng = max(1, engaged_n[u])
            signals = {
                "interest": (np.maximum(vectors[[row[p] for p in pool]] @ vec, 0.0) if vec is not None and pool
                             else np.zeros(len(pool))),
                "reply": np.asarray([1.0 if posts[p][2] in posts and posts[posts[p][2]][1] == u else 0.0
                                     for p in pool]),
                "hashtag": np.asarray([np.mean([tag_counts[u][x] / n_eng for x in tags[p]])
                                       if tags.get(p) else 0.0 for p in pool]),
                "following": np.asarray([1.0 if posts[p][1] in follows[u] else 0.0 for p in pool]),
                "top_level": np.asarray([0.0 if posts[p][2] else 1.0 for p in pool]),
            }
            cases.append(Case("warmup" if t < warm_end else "evaluation",
                              np.asarray([(t - posts[p][0]) / HOUR_MS for p in pool]), signals,
                              pool.index(e.post_id) if e.post_id in pool else None))
        if event_type == "upload":
            post, parent, creator = r["post_id"], r.get("parent_post_id"), r["creator_id"]
            tags[post] = list(r.get("hashtags") or []) if not parent else tags.get(parent, [])
            posts[post] = (t, creator, parent)
            order.append(post)
            if post in row:
                engaged[creator].append((t, post, PROFILE_WEIGHTS["OWN_POST"]))
            if parent:
                seen[creator].add(parent)
                engage(creator, parent, t, "ANSWER")
            else:
                tag_counts[creator].update(tags[post])
                engaged_n[creator] += 1
        elif event_type == "follow":
            if r.get("action", "FOLLOW") == "FOLLOW":
                follows[r["follower_id"]].add(r["followee_id"])
        elif event_type == "interaction" and r["user_id"] != anonymous_user_id:
            seen[r["user_id"]].add(r["post_id"])
            if r["type"] in ("COMMENT", "LIKE"):
                engage(r["user_id"], r["post_id"], t, r["type"])
    return cases


def fit(cases: Sequence[Case], grid: Mapping[str, Sequence[float]] = GRID, top: int = 10,
        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Score every configuration of ``grid`` on the warm-up cases; the report (JSON-ready): the
    ``top`` configurations by warm-up NDCG@10 with their evaluation-period NDCG@10, and
    newest-first on both periods."""
    warm = [c for c in cases if c.period == "warmup"]
    held = [c for c in cases if c.period == "evaluation"]
    names = list(grid)
    configs = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    scored = []
    for i, cfg in enumerate(configs):
        scored.append((round(ndcg(warm, cfg), 6), cfg))
        if progress is not None:
            progress(i + 1, len(configs))
    scored.sort(key=lambda sc: -sc[0])
    newest = {"novelty_half_life_h": 1.0}   # pure recency: the pool is newest first
    best = scored[0][1]
    return {
        "events": {"warmup": len(warm), "evaluation": len(held)},
        "grid": {k: list(v) for k, v in grid.items()},
        "newest_first": {"warmup_ndcg10": round(ndcg(warm, newest), 4),
                         "evaluation_ndcg10": round(ndcg(held, newest), 4)},
        "best": {**best, "warmup_ndcg10": scored[0][0],
                 "evaluation_ndcg10": round(ndcg(held, best), 4)},
        "top": [{**cfg, "warmup_ndcg10": s, "evaluation_ndcg10": round(ndcg(held, cfg), 4)}
                for s, cfg in scored[:top]],
    }
