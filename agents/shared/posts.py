"""Side states over published posts, shared by user_profiler, feed_fanout and feed_ranker.

Both are global tables (:class:`streams.contracts.agent.SideInput`): every worker folds the whole
topic, and an agent asks *as of* its event's time, so a replay (which has read the topic whole)
answers what the live run answered when the side topic was not behind:

* :class:`PublishedPosts` over ``posts-published``: each post's facts (creator, time, content
  type, distribution, expiry, hashtags, categories, quality), by id, by creator and by time;
* :class:`PostVectors` over ``content-enriched``: each post's unit vector in the content-embedding
  space (:func:`post_vector`).

Memory: one :class:`PostFacts` (a few hundred bytes) and one ``(d,)`` float32 vector per post;
nothing is evicted (an eviction that depends on arrival order would make answers depend on it).
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from models.ranking.readtime import unit  # noqa: F401  (one normalization for agents and the read side)
from streams.contracts.agent import ms_of


@dataclass(frozen=True)
class PostFacts:
    """What ``posts-published`` says about a post (times in UTC epoch ms)."""

    post_id: str
    creator_id: str
    published_at: int
    uploaded_at: int
    kind: str
    content_type: str
    distribution: str
    expires_at: int | None
    hashtags: tuple[str, ...]
    categories: tuple[tuple[str, float], ...]
    quality: float | None
    parent_post_id: str | None

    @classmethod
    def of(cls, record: dict[str, Any]) -> "PostFacts":
        """From a decoded ``PostPublished`` record."""
        expires = record.get("expires_at")
        return cls(
            post_id=record["post_id"], creator_id=record["creator_id"],
            published_at=ms_of(record["event_time"]), uploaded_at=ms_of(record["uploaded_at"]),
            kind=str(record["kind"]), content_type=str(record["content_type"]),
            distribution=str(record["distribution"]),
            expires_at=None if expires is None else ms_of(expires),
            hashtags=tuple(sorted({h.lstrip("#").strip().lower()
                                   for h in record.get("hashtags") or () if h.strip("# ")})),
            categories=tuple(sorted((k, float(v)) for k, v in (record.get("categories") or {}).items())),
            quality=record.get("quality_score"),
            parent_post_id=record.get("parent_post_id"))

    def live_at(self, t_ms: int) -> bool:
        """Published at or before ``t_ms`` and not expired at ``t_ms``."""
        return self.published_at <= t_ms and (self.expires_at is None or t_ms < self.expires_at)


class PublishedPosts:
    """Published posts as of an event time (side state over ``posts-published``). Thread-safe.

    A post is published once (the publisher derives the event id from the post id); a second
    record of one post (a re-delivery) replaces the first only if it is identical in time, so the
    answers do not depend on which copy came first.
    """

    def __init__(self) -> None:
        self._facts: dict[str, PostFacts] = {}
        self._order: list[tuple[int, str]] = []            # (published_at, post_id), ascending
        self._by_creator: dict[str, list[tuple[int, str]]] = {}
        self._by_tag: dict[str, list[tuple[int, str]]] = {}
        self._restricted_prefix: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``PostPublished`` record in."""
        facts = PostFacts.of(record)
        with self._lock:
            old = self._facts.get(facts.post_id)
            if old is not None:
                if (old.published_at, old.post_id) <= (facts.published_at, facts.post_id):
                    return
                self._order.remove((old.published_at, old.post_id))
                self._by_creator[old.creator_id].remove((old.published_at, old.post_id))
                for tag in tags_of(old):
                    self._by_tag[tag].remove((old.published_at, old.post_id))
            self._facts[facts.post_id] = facts
            self._restricted_prefix.pop(facts.creator_id, None)
            key = (facts.published_at, facts.post_id)
            bisect.insort(self._order, key)
            bisect.insort(self._by_creator.setdefault(facts.creator_id, []), key)
            for tag in tags_of(facts):
                bisect.insort(self._by_tag.setdefault(tag, []), key)

    def __len__(self) -> int:
        return len(self._facts)

    def get(self, post_id: str, as_of_ms: int) -> PostFacts | None:
        """The post's facts if it was published at or before ``as_of_ms``, else None."""
        f = self._facts.get(post_id)
        return f if f is not None and f.published_at <= as_of_ms else None

    def topic_hashtags(self, facts: PostFacts, as_of_ms: int) -> tuple[str, ...]:
        """The hashtags a post is about: its own, or for an untagged reply its parent's (a reply
        is on its parent's topic; Stack Exchange answers, for one, carry no tags)."""
        if facts.hashtags or not facts.parent_post_id:
            return facts.hashtags
        parent = self.get(facts.parent_post_id, as_of_ms)
        return parent.hashtags if parent is not None else ()

    def window(self, since_ms: int, as_of_ms: int) -> list[PostFacts]:
        """Posts published in ``[since_ms, as_of_ms]``, oldest first (ties by post id)."""
        with self._lock:
            lo = bisect.bisect_left(self._order, (since_ms, ""))
            hi = bisect.bisect_right(self._order, (as_of_ms, "\U0010ffff"))
            return [self._facts[p] for _, p in self._order[lo:hi]]

    def by_creator(self, creator_id: str, since_ms: int, as_of_ms: int) -> list[PostFacts]:
        """``creator_id``'s posts published in ``[since_ms, as_of_ms]``, oldest first."""
        return self._range(self._by_creator.get(creator_id, ()), since_ms, as_of_ms)

    def standing(self, creator_id: str, as_of_ms: int) -> tuple[int, int]:
        """``(FULL posts, RESTRICTED posts)`` the creator published at or before ``as_of_ms``:
        the moderation history behind creator trust. O(log n) with a per-creator prefix count,
        rebuilt when a post of the creator arrives."""
        with self._lock:
            keys = self._by_creator.get(creator_id, ())
            if not keys:
                return 0, 0
            prefix = self._restricted_prefix.get(creator_id)
            if prefix is None or len(prefix) != len(keys) + 1:
                prefix = [0]
                for _, p in keys:
                    prefix.append(prefix[-1] + (self._facts[p].distribution != "FULL"))
                self._restricted_prefix[creator_id] = prefix
            n = bisect.bisect_right(keys, (as_of_ms, "\U0010ffff"))
            return n - prefix[n], prefix[n]

    def by_tag(self, tag: str, since_ms: int, as_of_ms: int) -> list[PostFacts]:
        """Posts tagged ``tag`` (:func:`tags_of`) published in ``[since_ms, as_of_ms]``, oldest
        first."""
        return self._range(self._by_tag.get(tag.lstrip("#").strip().lower(), ()), since_ms, as_of_ms)

    def _range(self, keys, since_ms: int, as_of_ms: int) -> list[PostFacts]:
        with self._lock:
            lo = bisect.bisect_left(keys, (since_ms, ""))
            hi = bisect.bisect_right(keys, (as_of_ms, "\U0010ffff"))
            return [self._facts[p] for _, p in keys[lo:hi]]


def tags_of(facts: PostFacts) -> tuple[str, ...]:
    """What a post is *about* for interest matching: its hashtags and its most probable
    category (lower case, no '#')."""
    tags = set(facts.hashtags)
    if facts.categories:
        tags.add(max(facts.categories, key=lambda kv: (kv[1], kv[0]))[0].lower())
    return tuple(sorted(tags))


def post_vector(record: dict[str, Any]) -> np.ndarray | None:
    """A post's one vector in the content-embedding space, from a ``ContentEnrichment`` record:
    the unit-length mean of its ``image_embedding`` and ``text_embedding`` (either alone when the
    other is null), ``(d,)`` float32; None when both are null or zero. Both embeddings are unit
    vectors in one space (CLIP's, or MiniLM's through the ImageNet bridge), so the mean stands for
    a post that is both picture and words."""
    parts = [np.asarray(v, dtype=np.float32) for v in (record.get("image_embedding"),
                                                       record.get("text_embedding")) if v]
    if not parts:
        return None
    v = parts[0] if len(parts) == 1 else (parts[0] + parts[1])
    n = float(np.linalg.norm(v))
    return None if n == 0.0 else (v / n).astype(np.float32)


class PostVectors:
    """Each post's vector (:func:`post_vector`) as of an event time (side state over
    ``content-enriched``). Thread-safe.

    The time of a vector is the enrichment's ``event_time`` (clip_ai stamps the upload's), so a
    post's vector is known from its upload on.
    """

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}
        self._at: list[int] = []
        self._ids: list[str] = []
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._n = 0
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``ContentEnrichment`` record in (a post's first enrichment by time wins)."""
        v = post_vector(record)
        if v is None:
            return
        at, pid = ms_of(record["event_time"]), record["post_id"]
        with self._lock:
            row = self._rows.get(pid)
            if row is not None:
                if self._at[row] <= at:
                    return
                self._at[row] = at
                self._matrix[row] = v
                return
            if self._matrix.shape[1] == 0:
                self._matrix = np.zeros((1024, v.shape[0]), dtype=np.float32)
            elif v.shape[0] != self._matrix.shape[1]:
                return  # another model's space: not comparable (a rebuild re-enriches)
            if self._n == self._matrix.shape[0]:
                self._matrix = np.concatenate([self._matrix, np.zeros_like(self._matrix)])
            self._matrix[self._n] = v
            self._rows[pid] = self._n
            self._at.append(at)
            self._ids.append(pid)
            self._n += 1

    @property
    def dim(self) -> int:
        """Vector width (0 before the first vector)."""
        return int(self._matrix.shape[1])

    def get(self, post_id: str, as_of_ms: int) -> np.ndarray | None:
        """The post's ``(d,)`` unit vector if known at ``as_of_ms``, else None (a copy)."""
        with self._lock:
            row = self._rows.get(post_id)
            if row is None or self._at[row] > as_of_ms:
                return None
            return self._matrix[row].copy()

    def matrix(self, post_ids: Sequence[str], as_of_ms: int) -> tuple[list[str], np.ndarray]:
        """``(ids, (n, d) float32)`` for the ``post_ids`` whose vectors are known at ``as_of_ms``,
        in the order given."""
        with self._lock:
            rows, ids = [], []
            for p in post_ids:
                r = self._rows.get(p)
                if r is not None and self._at[r] <= as_of_ms:
                    rows.append(r)
                    ids.append(p)
            return ids, self._matrix[rows] if rows else np.zeros((0, self.dim), np.float32)


class Takedowns:
    """Posts withdrawn after publication, as of a time (side state over ``takedowns``).
    Thread-safe (a dict of post id -> earliest takedown time, ms)."""

    def __init__(self) -> None:
        self._at: dict[str, int] = {}
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``Takedown`` record in."""
        at = ms_of(record["event_time"])
        with self._lock:
            old = self._at.get(record["post_id"])
            if old is None or at < old:
                self._at[record["post_id"]] = at

    def taken_down(self, post_id: str, as_of_ms: int) -> bool:
        """Whether ``post_id`` was taken down at or before ``as_of_ms``."""
        at = self._at.get(post_id)
        return at is not None and at <= as_of_ms


def open_takedowns(config: Any, models: Any) -> Takedowns:
    """``SideInput.open`` for ``takedowns``."""
    return Takedowns()


def open_published(config: Any, models: Any) -> PublishedPosts:
    """``SideInput.open`` for ``posts-published``."""
    return PublishedPosts()


def open_vectors(config: Any, models: Any) -> PostVectors:
    """``SideInput.open`` for ``content-enriched``."""
    return PostVectors()


