"""What a published post mentions: its hashtags and its likely categories, normalised.

A hashtag is lowercased, stripped of surrounding whitespace and leading ``#`` (the schema's
hashtags carry none, upstream apps sometimes do), and kept when it is 1 to
:data:`MAX_HASHTAG_CHARS` characters with no whitespace; a post's duplicates count once, and at
most :data:`MAX_HASHTAGS` per post count (spam with fifty tags does not make fifty trends). A
category counts when CLIP AI's zero-shot probability is at least :data:`CATEGORY_MIN_PROB`
(at most two can, since the probabilities sum to at most 1 per post).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

HASHTAG, CATEGORY = "HASHTAG", "CATEGORY"
#: Longest hashtag counted (characters).
MAX_HASHTAG_CHARS = 100
#: Hashtags counted per post (the first ones, in the post's order).
MAX_HASHTAGS = 10
#: Zero-shot probability a category needs to count as mentioned.
CATEGORY_MIN_PROB = 0.35


def normalise_hashtag(tag: Any) -> str | None:
    """``tag`` as counted (lowercase, no ``#``), or None when it is not a usable hashtag."""
    if not isinstance(tag, str):
        return None
    t = tag.strip().lstrip("#").strip().lower()
    if not t or len(t) > MAX_HASHTAG_CHARS or any(c.isspace() for c in t):
        return None
    return t


def subjects_of(hashtags: Iterable[Any] | None, categories: dict[str, Any] | None) -> list[tuple[str, str]]:
    """``[(subject_kind, subject), ...]`` a post mentions: its hashtags (in order, distinct, at
    most :data:`MAX_HASHTAGS`), then its categories at or above :data:`CATEGORY_MIN_PROB` (by
    name). Anything malformed is skipped, never raised."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for tag in hashtags or ():
        t = normalise_hashtag(tag)
        if t is not None and t not in seen:
            seen.add(t)
            out.append((HASHTAG, t))
            if len(seen) == MAX_HASHTAGS:
                break
    for name, prob in sorted((categories or {}).items()):
        if (isinstance(name, str) and name.strip() and isinstance(prob, (int, float))
                and math.isfinite(prob) and prob >= CATEGORY_MIN_PROB):
            out.append((CATEGORY, name.strip().lower()))
    return out
