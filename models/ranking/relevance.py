"""Feed relevance: the score feed_ranker sorts by, and its author-diversity pass.

Objective: show each person the posts most *relevant* to them, meaning close to what they
engage with and chose to follow, good, from creators in good standing, and fresh for what the
post is. Predicted engagement (clicks, dwell, likes a post will get) is deliberately not a
signal: optimising for it rewards whatever holds attention, not what people value.

``score = sum(WEIGHTS[s] * signal[s])`` over the signals, each in [0, 1] (category match in
[-1, 1]):

=============  ======  ======================================================================
signal         weight  definition
=============  ======  ======================================================================
novelty         0.32   ``2 ** (-age / NOVELTY_HALF_LIFE_H)``: how new the post is, any type
reply           0.22   1 when the post replies to one of the user's own posts
top_level       0.13   1 when the post starts a conversation (is not a reply)
interest        0.10   cosine of the post's vector and the user's interest vector, below 0 -> 0
hashtag         0.03   mean of the user's affinities for the post's topic hashtags
freshness       0.05   ``2 ** (-age / FRESHNESS_HALF_LIFE_H[content type])``: still current
quality         0.05   clip_ai's quality score (0.5 when unknown)
trust           0.05   creator trust (:func:`creator_trust`)
following       0.03   1 when the user follows the creator
category        0.02   sum over categories of the user's affinity x the post's probability
=============  ======  ======================================================================

Novelty and freshness are different things: people meet posts while they are new (the reason
newest-first feeds are strong), whatever the post is, while freshness says whether a post is
still current for its content type (a Flash story is stale in hours, a Forever post barely
ages). Replies belong to their conversation: most relevant to the person replied to (``reply``),
while to everyone else the conversation's top-level post is what a feed shows, its replies
beneath it (``top_level``; home timelines treat replies the same way).

The trade-offs were chosen by a grid search on the engagements of the Stack Exchange history's
warm-up period only (its first 30 days, which ``pulse eval ranking`` never scores): ``pulse eval
ranking-fit`` (:mod:`streams.bench.ranking_fit`) prints the grid. The winner, relative to
novelty's weight: reply 0.7, top_level 0.4, interest 0.3, hashtag 0.1, following 0, at a 24-hour
novelty half-life. Those five were scaled to sum to 0.80, and 0.20 kept for the signals the
product stands for that this history cannot judge (freshness by type, quality, trust,
following, category). Every weight encodes relevance (closeness to what the user engages with,
conversation with them, newness, standing), none a prediction of the engagement a post will get.

Then author diversity: walking down the sorted list, the ``j``-th post of an author already
placed (``j`` = 1, 2, ...) loses ``1 - DIVERSITY_DECAY ** j`` of its score's magnitude and the list is
re-sorted greedily (a maximal-marginal-relevance style pass, Carbonell and Goldstein 1998).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

WEIGHTS: dict[str, float] = {
    "novelty": 0.32, "reply": 0.22, "top_level": 0.13, "interest": 0.10, "hashtag": 0.03,
    "freshness": 0.05, "quality": 0.05, "trust": 0.05, "following": 0.03, "category": 0.02,
}
#: Novelty half-life, hours (any content type): fitted on the warm-up period (module docstring).
NOVELTY_HALF_LIFE_H = 24.0
#: Freshness half-life by content type, hours: Flash posts live a day and decay in hours, Memory
#: posts in days, Forever posts barely (two weeks).
FRESHNESS_HALF_LIFE_H: dict[str, float] = {"FLASH": 6.0, "MEMORY": 48.0, "FOREVER": 336.0}
DIVERSITY_DECAY = 0.7
HOUR_MS = 3_600_000


@dataclass
class Scored:
    """One candidate with its signals, score and source (``IN_NETWORK``, ``INTEREST``,
    ``COLD_START``, ``RECENT``); ``note`` is one more reason, shown last (e.g. ``pulled at
    read``)."""

    post_id: str
    creator_id: str
    source: str
    published_at: int
    signals: dict[str, float] = field(default_factory=dict)
    score: float = 0.0
    note: str | None = None

    def reasons(self, top: int = 3) -> list[str]:
        """The signals that contributed most, as ``'name value'`` strings (value = the signal,
        rounded to 2 decimals), largest contribution first; then the source."""
        contrib = sorted(((WEIGHTS[k] * v, k, v) for k, v in self.signals.items() if v > 0),
                         key=lambda c: (-c[0], c[1]))
        out = [f"{k} {v:.2f}" for _, k, v in contrib[:top]] + [f"source {self.source.lower()}"]
        return out + [self.note] if self.note else out


def freshness(age_ms: int, content_type: str) -> float:
    """``2 ** (-age_h / half_life_h)`` for the content type (ages below zero count as zero)."""
    half = FRESHNESS_HALF_LIFE_H.get(content_type, FRESHNESS_HALF_LIFE_H["FOREVER"])
    return 2.0 ** (-max(age_ms, 0) / (half * HOUR_MS))


#: Creator trust prior: pseudo-counts of FULL posts and of all posts (most creators are clean, so
#: a new creator starts near the population, not at a coin flip: a prior of 0.5 made trust grow
#: with post count and favoured prolific authors, measured as an author Gini of 0.84 against
#: newest-first's 0.76 in ``pulse eval ranking``).
TRUST_PRIOR_CLEAN, TRUST_PRIOR_POSTS = 9.0, 10.0


def creator_trust(full_posts: int, restricted_posts: int) -> float:
    """Trust in [0, 1] from a creator's moderation history: the share of their published posts
    that went out with FULL distribution, a RESTRICTED post counting three times, smoothed by a
    Beta prior of 9 clean posts in 10 (:data:`TRUST_PRIOR_CLEAN`): a new creator 0.9; ten clean
    posts 0.95; nine clean and one restricted 0.82; five restricted 0.36."""
    return ((TRUST_PRIOR_CLEAN + full_posts)
            / (TRUST_PRIOR_POSTS + full_posts + 3.0 * restricted_posts))


def category_match(affinity: Mapping[str, float], categories: Sequence[tuple[str, float]]) -> float:
    """``sum(affinity[c] * p)`` over the post's ``(category, probability)``, clipped to [-1, 1]."""
    s = sum(affinity.get(c, 0.0) * p for c, p in categories)
    return max(-1.0, min(1.0, s))


def hashtag_match(affinity: Mapping[str, float], hashtags: Sequence[str]) -> float:
    """Mean of the user's affinities for the post's hashtags (0 without hashtags)."""
    return sum(affinity.get(h, 0.0) for h in hashtags) / len(hashtags) if hashtags else 0.0


def novelty_array(ages_ms: Sequence[int]):
    """``2 ** (-age_h / NOVELTY_HALF_LIFE_H)`` of many posts: ``(n,)`` float64 (ages below zero
    count as zero)."""
    import numpy as np

    age = np.maximum(np.asarray(ages_ms, dtype=np.float64), 0.0)
    return np.exp2(-age / (NOVELTY_HALF_LIFE_H * HOUR_MS))


def half_lives_h(content_types: Sequence[str]):
    """Each content type's freshness half-life in hours (:data:`FRESHNESS_HALF_LIFE_H`, an
    unknown type as FOREVER): ``(n,)`` float64."""
    import numpy as np

    default = FRESHNESS_HALF_LIFE_H["FOREVER"]
    of_type = {c: FRESHNESS_HALF_LIFE_H.get(c, default) for c in set(content_types)}
    return np.fromiter(map(of_type.__getitem__, content_types), dtype=np.float64,
                       count=len(content_types))


def freshness_array(ages_ms: Sequence[int], content_types: Sequence[str]):
    """:func:`freshness` of many posts at once: ``(n,)`` float64."""
    return freshness_of_half_lives(ages_ms, half_lives_h(content_types))


def freshness_of_half_lives(ages_ms: Sequence[int], half_lives):
    """:func:`freshness_array` with each post's half-life (hours, :func:`half_lives_h`) already
    looked up: ``(n,)`` float64."""
    import numpy as np

    age = np.maximum(np.asarray(ages_ms, dtype=np.float64), 0.0)
    return np.exp2(-age / (np.asarray(half_lives, dtype=np.float64) * HOUR_MS))


def score_arrays(columns: Mapping[str, Sequence[float]]):
    """Signals given as columns (signal -> one value per post) -> ``(names, signals, scores)``:
    the signal names present in :data:`WEIGHTS` order, an ``(n, len(names))`` float64 array of
    the signals rounded to 6 decimals, and ``(n,)`` float64 scores rounded to 9 (:func:`score`
    of the rounded signals, summed in :data:`WEIGHTS` order, the same for every post)."""
    import numpy as np

    names = [k for k in WEIGHTS if k in columns]
    m = np.round(np.column_stack([np.asarray(columns[k], dtype=np.float64) for k in names]), 6)
    w = np.asarray([WEIGHTS[k] for k in names], dtype=np.float64)
    # summed left to right in WEIGHTS order, as score() sums: cumsum along a row accumulates
    # sequentially (no pairwise or BLAS blocking), so the last column is that sum bit for bit
    total = np.cumsum(m * w, axis=1)[:, -1] if names else np.zeros(m.shape[0], dtype=np.float64)
    return names, m, np.round(total, 9)


def score_matrix(columns: Mapping[str, Sequence[float]]) -> tuple[list[list[float]], list[float]]:
    """:func:`score_arrays` as lists: ``(per-post signal rows in :data:`WEIGHTS` order of the
    signals given, scores)``."""
    _, m, total = score_arrays(columns)
    return m.tolist(), total.tolist()


def score_columns(columns: Mapping[str, Sequence[float]]) -> tuple[list[dict[str, float]], list[float]]:
    """:func:`score_matrix` with each post's signals as a dict (signal -> value)."""
    names = [k for k in WEIGHTS if k in columns]
    rows, scores = score_matrix(columns)
    return [dict(zip(names, r)) for r in rows], scores


def score(signals: Mapping[str, float]) -> float:
    """``sum(WEIGHTS[s] * signals[s])``, rounded to 9 decimals (so ties are exact ties)."""
    return round(sum(WEIGHTS[k] * v for k, v in signals.items()), 9)


def diversify(ranked: list[Scored], limit: int) -> list[Scored]:
    """Author diversity (module docstring): the top ``limit`` of ``ranked`` after greedily
    discounting each author's repeated posts (:func:`diversified`), their ``score`` set to the
    discounted score."""
    out = []
    for i, adjusted in diversified([s.score for s in ranked], [s.post_id for s in ranked],
                                   [s.creator_id for s in ranked], limit):
        s = ranked[i]
        s.score = adjusted
        out.append(s)
    return out


def diversified(scores: Sequence[float], post_ids: Sequence[str], creator_ids: Sequence[str],
                limit: int) -> list[tuple[int, float]]:
    """Author diversity over candidates given as columns: ``[(index, discounted score)]`` of the
    top ``limit``, best first; ties by post id. Lazy greedy with a heap: an entry whose author
    gained a post since it was scored is re-scored and pushed back, so the result equals the
    quadratic greedy pass in O(n log n). Candidates enter the heap in descending score order,
    only once the heap's top is no better than they are: every candidate left out scores
    strictly below the top's (discounted) score and could not be popped before it, since
    discounts only lower scores. A read ranking hundreds of posts for a page of 20 so touches
    little more than the page."""
    import heapq

    import numpy as np

    base = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-base, kind="stable").tolist()
    value = base.tolist()
    heap: list[tuple[float, str, int, int]] = []
    placed: dict[str, int] = {}
    out: list[tuple[int, float]] = []
    nxt, n = 0, len(order)
    while len(out) < limit:
        while nxt < n and (not heap or -value[order[nxt]] <= heap[0][0]):
            i = order[nxt]
            heapq.heappush(heap, (-value[i], post_ids[i], 0, i))
            nxt += 1
        if not heap:
            break
        neg, post_id, j, i = heapq.heappop(heap)
        creator = creator_ids[i]
        now = placed.get(creator, 0)
        if now != j:  # stale: the author gained posts above it since
            b = value[i]
            heapq.heappush(heap, (-(b - abs(b) * (1.0 - DIVERSITY_DECAY ** now)), post_id, now, i))
            continue
        placed[creator] = now + 1
        out.append((i, round(-neg, 9)))
    return out
