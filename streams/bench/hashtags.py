"""``pulse eval hashtags``: how well the similarity cut of hashtag suggestions
(:mod:`streams.query.hashtags`) tells a trend about the post's subject from another trend, on a
real site's posts.

For each post of the history (up to ``posts``, in time order) carrying a hashtag that at least
``min_posts`` posts carry, and for each such tag of the post:

* *own*: the cosine between the post's MiniLM embedding (title and body, as clip_ai embeds a text
  post) and the centroid of ``sample`` other posts carrying that tag (a trend's
  ``sample_post_ids`` are a few posts that made it);
* *other* (the baseline the cut must reject): the same with ``sample`` posts of another such tag
  drawn at random (seeded), none of which shares a tag with the post.

Reported per cut: the share of *own* pairs at or above it (a fitting trend kept) and of *other*
pairs (an unrelated trend suggested). A single-topic site (a Stack Exchange about one field) is
the hard case: every post is about the same field, so another tag's posts are close too; on a
general platform unrelated trends lie much further away (cosines near 0).
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np

CUTS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def _norm_tag(t: str) -> str:
    return t.lstrip("#").lower()


def run_hashtags_eval(uploads: Sequence[dict], encode: Callable[[list[str]], np.ndarray], *,
                      dataset: str = "", posts: int = 800, sample: int = 3, min_posts: int = 4,
                      seed: int = 7, default_cut: float = 0.5) -> dict[str, Any]:
    """The report (module docstring). ``uploads``: upload records in time order (``title``,
    ``caption``, ``hashtags``); ``encode``: texts -> ``(n, d)`` unit vectors (MiniLM).

    Raises ``ValueError`` when no tag has ``min_posts`` posts among the first ``posts``."""
    tagged = [u for u in uploads if u.get("hashtags")][:posts]
    by_tag: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(tagged):
        for t in {_norm_tag(t) for t in u["hashtags"]}:
            by_tag[t].append(i)
    tags = sorted(t for t, ix in by_tag.items() if len(ix) >= min_posts)
    if len(tags) < 2:
        raise ValueError(f"fewer than two tags with {min_posts} posts among the first {posts} tagged posts")
    texts = [" ".join(x for x in (u.get("title"), u.get("caption")) if x)[:1000] for u in tagged]
    vectors = np.asarray(encode(texts), np.float64)
    rng = random.Random(seed)

    def centroid(ix: list[int]) -> np.ndarray:
        c = vectors[ix].mean(axis=0)
        return c / max(float(np.linalg.norm(c)), 1e-12)

    own, other = [], []
    for i, u in enumerate(tagged):
        mine = {_norm_tag(t) for t in u["hashtags"]}
        for t in sorted(mine & set(tags)):
            pool = [j for j in by_tag[t] if j != i]
            if len(pool) < sample:
                continue
            own.append(float(vectors[i] @ centroid(rng.sample(pool, sample))))
            t2 = rng.choice([x for x in tags if x not in mine])
            pool2 = [j for j in by_tag[t2] if not mine & {_norm_tag(h) for h in tagged[j]["hashtags"]}]
            if len(pool2) >= sample:
                other.append(float(vectors[i] @ centroid(rng.sample(pool2, sample))))
    own_a, other_a = np.asarray(own), np.asarray(other)

    def share(a: np.ndarray, cut: float) -> float:
        return round(float((a >= cut).mean()), 4) if len(a) else 0.0

    return {
        "dataset": dataset, "posts": len(tagged), "tags": len(tags), "sample_posts_per_trend": sample,
        "pairs": {"own": len(own), "other": len(other)},
        "cuts": [{"cut": c, "own_kept": share(own_a, c), "other_suggested": share(other_a, c)} for c in CUTS],
        "default_cut": default_cut,
        "at_default": {"own_kept": share(own_a, default_cut), "other_suggested": share(other_a, default_cut)},
        "quantiles": {name: dict(zip(("p10", "p25", "p50", "p75", "p90"),
                                     np.quantile(a, [.1, .25, .5, .75, .9]).round(3).tolist()))
                      for name, a in (("own", own_a), ("other", other_a)) if len(a)},
    }
