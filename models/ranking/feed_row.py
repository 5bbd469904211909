"""The packed form of a ranked feed: what feed_ranker stores in ``user_feeds.feed`` and a feed
read decodes.

Why a packed blob and not Cassandra collections
    A feed of 200 items as ``frozen<list<frozen<tuple<...>>>>`` columns (the row's format until
    2026-12-06) cost the Python driver about 0.85 ms of CPU per read to decode, one Python
    object per tuple field, on top of its 0.45 ms per request; the ranking that follows needs
    the items as columns anyway (:class:`models.ranking.readtime.StoredFeed`). Packed, the row
    is one ``blob`` cell whose strings orjson parses and whose numbers NumPy reads in place:
    26 µs to unpack a 200-item feed, where an Avro record of the same columns took 205 µs in
    fastavro's reader (one call per array item). ``streams/bench/feeds.py`` measures the read.

Format (:data:`FORMAT` 1), little-endian::

    byte 0        FORMAT
    bytes 1-4     L: uint32, the length of the header
    L bytes       header: JSON (keys sorted) {"n", "k", "d", "post_ids", "creator_ids",
                  "sources", "content_types", "signal_names", "hashtag_affinity",
                  "category_affinity"}: the string columns (n each), the k signal names, the
                  reader's affinities (name -> weight)
    8n bytes      published_at: int64, ms since the epoch
    8n bytes      scores: float64, the ranking's score after author diversity
    8nk bytes     signals: float64, n rows of k, each item's signals as the ranking computed them
                  (a reader whose signal set differs maps them by name: :func:`signals_as`)
    4d bytes      interest_vector: float32, the interest vector the ranking used (d = 0: none)

Items are best first. Reasons are not stored: a read recomputes them from the signals
(:meth:`models.ranking.relevance.Scored.reasons`). The encoding is deterministic (floats in
their shortest round-trip form, keys sorted), so the same feed gives the same bytes and a
replay's ``--verify`` compares rows byte for byte.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import orjson

from models.ranking.relevance import Scored

FORMAT = 1
_PREFIX = struct.Struct("<BI")
_STRING_COLUMNS = ("post_ids", "creator_ids", "sources", "content_types")


class FeedRowError(ValueError):
    """A ``user_feeds.feed`` value that is not a packed feed of a known format; the message
    says which format it has."""


@dataclass
class PackedFeed:
    """A ranked feed as columns (module docstring): lists of ``n`` for the ids, sources, content
    types and publish times (ms); ``scores`` ``(n,)`` float64; ``signals`` ``(n, k)`` float64
    named by ``signal_names``; ``interest_vector`` ``(d,)`` float32 or None."""

    post_ids: list[str]
    creator_ids: list[str]
    sources: list[str]
    content_types: list[str]
    published_at: list[int]
    scores: np.ndarray
    signal_names: tuple[str, ...]
    signals: np.ndarray
    interest_vector: np.ndarray | None = None
    hashtag_affinity: dict[str, float] = field(default_factory=dict)
    category_affinity: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.post_ids)

    def scored(self) -> list[Scored]:
        """The items as the ranking scored them, best first (their ``reasons()`` are those the
        ranking gave)."""
        rows = self.signals.tolist()
        return [Scored(p, c, src, t, dict(zip(self.signal_names, sig)), score)
                for p, c, src, t, sig, score in zip(self.post_ids, self.creator_ids, self.sources,
                                                     self.published_at, rows, self.scores.tolist())]


def pack_feed(post_ids: Sequence[str], creator_ids: Sequence[str], sources: Sequence[str],
              content_types: Sequence[str], published_at: Sequence[int], scores: Sequence[float],
              signal_names: Sequence[str], signals: Sequence[Sequence[float]] | np.ndarray,
              interest_vector: Sequence[float] | np.ndarray | None = None,
              hashtag_affinity: Mapping[str, float] | None = None,
              category_affinity: Mapping[str, float] | None = None) -> bytes:
    """The ``user_feeds.feed`` bytes of a feed of ``n`` items (module docstring).

    ``signals`` is ``n`` rows of ``len(signal_names)`` values; ``interest_vector`` a ``(d,)``
    vector (None or empty: stored with ``d`` 0, read back as None).

    Raises
    ------
    ValueError
        The columns differ in length, or a signal row has another length than
        ``signal_names``.
    """
    n = len(post_ids)
    if not (len(creator_ids) == len(sources) == len(content_types) == len(published_at)
            == len(scores) == n):
        raise ValueError("every column of a packed feed needs one value per item: "
                         f"{n} post ids, {len(creator_ids)} creators, {len(sources)} sources, "
                         f"{len(content_types)} content types, {len(published_at)} times, "
                         f"{len(scores)} scores")
    k = len(signal_names)
    matrix = np.asarray(signals, dtype="<f8")
    if matrix.size == 0:
        matrix = matrix.reshape(n, k)
    if matrix.shape != (n, k):
        raise ValueError(f"signals must be {n} rows of {k} ({', '.join(signal_names)}), "
                         f"not an array of shape {matrix.shape}")
    vec = (np.asarray(interest_vector, dtype="<f4").ravel() if interest_vector is not None
           else np.zeros(0, dtype="<f4"))
    header = orjson.dumps({
        "n": n, "k": k, "d": int(vec.size),
        "post_ids": list(post_ids), "creator_ids": list(creator_ids), "sources": list(sources),
        "content_types": list(content_types), "signal_names": list(signal_names),
        "hashtag_affinity": {key: float(v) for key, v in (hashtag_affinity or {}).items()},
        "category_affinity": {key: float(v) for key, v in (category_affinity or {}).items()},
    }, option=orjson.OPT_SORT_KEYS)
    return b"".join((_PREFIX.pack(FORMAT, len(header)), header,
                     np.asarray(published_at, dtype="<i8").tobytes(),
                     np.asarray(scores, dtype="<f8").tobytes(), matrix.tobytes(), vec.tobytes()))


def unpack_feed(data: bytes) -> PackedFeed:
    """:func:`pack_feed`'s bytes -> :class:`PackedFeed` (the numeric columns are read-only views
    of ``data``).

    Raises
    ------
    FeedRowError
        ``data`` is empty, of another format, or not a whole packed feed.
    """
    if not data or data[0] != FORMAT:
        raise FeedRowError(f"not a packed feed of format {FORMAT} (first byte "
                           f"{data[0] if data else 'missing'}): written by another Pulse version; "
                           "`pulse replay rebuild --agents feed_ranker` rewrites the feeds")
    try:
        _, size = _PREFIX.unpack_from(data, 0)
        at = _PREFIX.size + size
        head = orjson.loads(memoryview(data)[_PREFIX.size:at])
        n, k, d = int(head["n"]), int(head["k"]), int(head["d"])
        if len(data) != at + 8 * n * (2 + k) + 4 * d:
            raise ValueError(f"{len(data)} bytes, not the {at + 8 * n * (2 + k) + 4 * d} of "
                             f"{n} items of {k} signals and a vector of {d}")
        if any(len(head[c]) != n for c in _STRING_COLUMNS) or len(head["signal_names"]) != k:
            raise ValueError("columns of different lengths")
        published = np.frombuffer(data, "<i8", n, at).tolist()
        scores = np.frombuffer(data, "<f8", n, at + 8 * n)
        signals = np.frombuffer(data, "<f8", n * k, at + 16 * n).reshape(n, k)
        vec = np.frombuffer(data, "<f4", d, at + 8 * n * (2 + k)) if d else None
        return PackedFeed(head["post_ids"], head["creator_ids"], head["sources"],
                          head["content_types"], published, scores, tuple(head["signal_names"]),
                          signals, vec, head["hashtag_affinity"], head["category_affinity"])
    except (ValueError, KeyError, TypeError, struct.error) as exc:  # orjson.JSONDecodeError is a ValueError
        raise FeedRowError(f"a packed feed that cannot be read ({exc})") from None


def stored_post_ids(row: Mapping[str, Any]) -> list[str]:
    """The post ids of a ``user_feeds`` row (a mapping of its columns), best first, in either
    format: the packed ``feed``, or the ``items`` of a ranker before it; [] for neither.

    Raises :class:`FeedRowError` for a ``feed`` that cannot be read."""
    packed = row.get("feed")
    if packed is not None:
        return unpack_feed(packed).post_ids
    return [item[0] for item in row.get("items") or ()]


def signals_as(feed: PackedFeed, names: Sequence[str]) -> np.ndarray:
    """The feed's signals as ``(n, len(names))`` float64 columns in the order of ``names``: a
    signal the feed did not store is 0 (a reader that knows more signals than the ranker that
    wrote the row)."""
    if feed.signal_names == tuple(names):
        return feed.signals
    out = np.zeros((len(feed), len(names)), dtype=np.float64)
    at = {name: j for j, name in enumerate(feed.signal_names)}
    for j, name in enumerate(names):
        if name in at:
            out[:, j] = feed.signals[:, at[name]]
    return out
