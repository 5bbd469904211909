"""A post's engagement counts, the figures derived from them, its early signals (the virality
regressor's features) and its final engagement (the regressor's label).

Kinds counted (:func:`kind_of`): VIEW, LONG_VIEW (a VIEW with ``dwell_ms >=``
:data:`models.profiles.interests.LONG_DWELL_MS`; it is also a VIEW), LIKE, SHARE, COMMENT,
REPLY (a post published as a reply to this one: a Stack Exchange answer), SKIP, HIDE, REPORT.

Figures (:func:`figures`)
    * ``engagement_rate`` = engaged users / reach: distinct users who liked, shared, commented
      or replied over distinct users who interacted at all (both HyperLogLog estimates); None
      while the reach is 0.
    * ``meaningful_engagement_ratio`` = (long views + shares + comments + replies) / views, the
      issue's "long dwell, shares, comments over views"; None without VIEW events (a source that
      does not log views, such as a Stack Exchange dump, has no denominator).

Early signals and label (:func:`features`, :func:`label`), all counted by the interaction's
age, its event time minus the post's publication time (ms):

    ==============  =================================================================
    feature         value
    ==============  =================================================================
    bias            1.0 (the regressor has no intercept of its own)
    likes           log1p(LIKEs of age < horizon)
    likes_first     log1p(LIKEs of age < horizon / 4): how fast they came
    comments        log1p(COMMENTs of age < horizon)
    comments_first  log1p(COMMENTs of age < horizon / 4)
    replies         log1p(REPLYs of age < horizon)
    shares          log1p(SHAREs of age < horizon)
    views           log1p(VIEWs of age < horizon)
    long_views      log1p(LONG_VIEWs of age < horizon)
    negative        log1p(HIDEs + REPORTs of age < horizon)
    is_reply        1.0 when the post replies to another post, else 0.0
    ==============  =================================================================

    ``label`` = log1p(max(0, LIKE + SHARE - HIDE - REPORT of age < maturity)): the post's net
    endorsements when it is mature (on a Stack Exchange history a LIKE is an upvote, a
    favourite or an acceptance, so this tracks the post's final score).

log1p keeps the heavy-tailed counts on one scale (a post with 1,000 likes is not 1,000 times as
informative as one with 1), which a linear regressor needs.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping

from models.profiles.interests import LONG_DWELL_MS

KINDS = ("VIEW", "LONG_VIEW", "LIKE", "SHARE", "COMMENT", "REPLY", "SKIP", "HIDE", "REPORT")
#: Kinds that make a user an *engaged* user of the post.
ENGAGED = frozenset({"LIKE", "SHARE", "COMMENT", "REPLY"})
#: Kinds in the meaningful-engagement numerator.
MEANINGFUL = ("LONG_VIEW", "SHARE", "COMMENT", "REPLY")
#: The regressor's feature names, in a fixed order.
FEATURES = ("bias", "likes", "likes_first", "comments", "comments_first", "replies", "shares",
            "views", "long_views", "negative", "is_reply")
#: Window counters a post keeps for its features and label: name -> (kinds counted, which age
#: bound: "horizon", "first" = horizon / 4, "maturity").
WINDOWS: dict[str, tuple[tuple[str, ...], str]] = {
    "likes": (("LIKE",), "horizon"), "likes_first": (("LIKE",), "first"),
    "comments": (("COMMENT",), "horizon"), "comments_first": (("COMMENT",), "first"),
    "replies": (("REPLY",), "horizon"), "shares": (("SHARE",), "horizon"),
    "views": (("VIEW",), "horizon"), "long_views": (("LONG_VIEW",), "horizon"),
    "negative": (("HIDE", "REPORT"), "horizon"),
    "endorse": (("LIKE", "SHARE"), "maturity"), "reject": (("HIDE", "REPORT"), "maturity"),
}


def kind_of(signal: str, dwell_ms: int | None) -> tuple[str, ...]:
    """The counted kinds of one signal (a long VIEW is both VIEW and LONG_VIEW; an unknown
    signal none)."""
    if signal == "VIEW":
        return ("VIEW", "LONG_VIEW") if (dwell_ms or 0) >= LONG_DWELL_MS else ("VIEW",)
    return (signal,) if signal in KINDS else ()


def window_updates(kinds: tuple[str, ...], age_ms: int, horizon_ms: int, maturity_ms: int
                   ) -> list[str]:
    """The :data:`WINDOWS` counters one interaction of ``kinds`` at ``age_ms`` increments.
    An age below 0 (an interaction stamped before the post) counts as 0."""
    age = max(0, age_ms)
    bound = {"first": horizon_ms // 4, "horizon": horizon_ms, "maturity": maturity_ms}
    return [name for name, b in _windows_of(tuple(kinds)) if age < bound[b]]


@functools.lru_cache(maxsize=64)
def _windows_of(kinds: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``(name, bound)`` of the :data:`WINDOWS` counting any of ``kinds``, in their order."""
    return tuple((name, b) for name, (ks, b) in WINDOWS.items() if any(k in ks for k in kinds))


def features(windows: Mapping[str, int], is_reply: bool) -> dict[str, float]:
    """The regressor's input (:data:`FEATURES`) from a post's window counters."""
    x = {"bias": 1.0, "is_reply": 1.0 if is_reply else 0.0}
    for name in FEATURES:
        if name not in x:
            x[name] = math.log1p(max(0, int(windows.get(name, 0))))
    return x


def label(windows: Mapping[str, int]) -> float:
    """The regressor's target: log1p of the net endorsements of age < maturity."""
    return math.log1p(max(0, int(windows.get("endorse", 0)) - int(windows.get("reject", 0))))


def early_engagement(windows: Mapping[str, int]) -> float:
    """The net endorsements already seen at the horizon, on :func:`label`'s scale: the base the
    regressor predicts the growth over, and the prediction before it has learned (no growth)."""
    return math.log1p(max(0, int(windows.get("likes", 0)) + int(windows.get("shares", 0))
                          - int(windows.get("negative", 0))))


def figures(counts: Mapping[str, int], reach: int, engaged: int) -> dict[str, Any]:
    """``engagement_rate`` and ``meaningful_engagement_ratio`` (module docstring) of a post's
    or creator's all-time ``counts`` (kind -> n), ``reach`` and ``engaged`` distinct users."""
    views = int(counts.get("VIEW", 0))
    return {
        "engagement_rate": min(1.0, engaged / reach) if reach > 0 else None,
        "meaningful_engagement_ratio": (sum(int(counts.get(k, 0)) for k in MEANINGFUL) / views
                                        if views > 0 else None),
    }
