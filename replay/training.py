"""Training sets from the log: the platform's own topics, replayed into a dataset directory.

:func:`export_clip_dataset` (``pulse dataset clip --out DIR``) reads ``uploads``,
``content-enriched`` and ``erasure-requests`` with :func:`replay.reader.read_topic` and writes a
CLIP dataset (format: :mod:`models.clip.dataset`). The join and labelling are the pure
:func:`clip_rows`, which tests call on captured records.

Which posts: image uploads whose media file is readable here, that clip_ai enriched, and that
nobody asked to erase (a ``USER`` erasure drops every post of that creator, a ``POST`` erasure
that post: a training set is a view too). Labels, first that applies:

1. ``creator_hashtag``: the creator tagged the post with a taxonomy category's name or one of
   its ``tags`` (the taxonomy file says a post carrying one counts as labelled for it); when the
   tags name several categories, the one clip_ai ranked higher wins.
2. ``clip_ai:<model_version>``: the enrichment's top category. A head trained only on these
   learns to imitate zero-shot; it is the creator labels (and moderator labels, when a topic
   carries them) that teach it something new.

Video and text posts are left out (the fine-tune needs an image; video keyframes are future work).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from models.clip.dataset import copy_media, write_dataset


def _label(upload: Mapping[str, Any], enrichment: Mapping[str, Any], tag_index: Mapping[str, str]) -> tuple[str, str]:
    ranked = sorted((enrichment.get("categories") or {}).items(), key=lambda kv: -kv[1])
    rank = {c: i for i, (c, _) in enumerate(ranked)}
    tagged = {tag_index[t] for t in (h.lstrip("#").lower() for h in upload.get("hashtags") or []) if t in tag_index}
    if tagged:
        return min(tagged, key=lambda c: (rank.get(c, len(rank)), c)), "creator_hashtag"
    return ranked[0][0], f"clip_ai:{enrichment.get('model_version', '')}"


def clip_rows(uploads: Iterable[Mapping[str, Any]], enrichments: Iterable[Mapping[str, Any]],
              erasures: Iterable[Mapping[str, Any]], categories: Sequence[Any], out_dir: Path,
              roots: Any = None) -> tuple[list[dict], dict]:
    """Join uploads with their latest enrichment, label them, link their media into ``out_dir``.

    ``categories``: the taxonomy (``load_taxonomy()``). ``roots``: the
    :class:`~agents.shared.media.MediaRoots` media is read from (an upload whose ``media_uri``
    lies outside them is counted as ``media_missing``, never copied); None: no roots, no media.
    Returns ``(rows for write_dataset, counts of what was left out and why)``.
    """
    from streams.contracts.media import MediaRoots

    tag_index = {}
    for c in categories:
        for t in (c.name, *c.tags):
            tag_index.setdefault(t.lower(), c.name)
    erased_users, erased_posts = set(), set()
    for e in erasures:
        if str(e.get("scope")) == "POST" and e.get("post_id"):
            erased_posts.add(e["post_id"])
        else:
            erased_users.add(e["user_id"])
    latest: dict[str, Mapping[str, Any]] = {}
    for e in enrichments:
        prev = latest.get(e["post_id"])
        if prev is None or _ms(e["event_time"]) >= _ms(prev["event_time"]):
            latest[e["post_id"]] = e
    skipped = {"not_image": 0, "erased": 0, "not_enriched": 0, "media_missing": 0, "duplicate": 0}
    rows, seen = [], set()
    for u in uploads:
        pid = u["post_id"]
        if pid in seen:
            skipped["duplicate"] += 1
            continue
        if str(u.get("kind")) != "IMAGE" or not u.get("media_uri"):
            skipped["not_image"] += 1
            continue
        if pid in erased_posts or u.get("creator_id") in erased_users:
            skipped["erased"] += 1
            continue
        e = latest.get(pid)
        if e is None or not e.get("categories"):
            skipped["not_enriched"] += 1
            continue
        try:
            src = (roots or MediaRoots()).resolve(u["media_uri"])
        except ValueError:  # MediaRefused: outside the media roots, another scheme
            src = None
        if src is None or not src.is_file():
            skipped["media_missing"] += 1
            continue
        seen.add(pid)
        category, source = _label(u, e, tag_index)
        rows.append({"post_id": pid, "image": copy_media(src, out_dir, pid), "caption": u.get("caption") or "",
                     "title": u.get("title"), "category": category, "label_source": source})
    return rows, skipped


def _ms(t: Any) -> int:
    return t if isinstance(t, int) else int(round(t.timestamp() * 1000))


def export_clip_dataset(settings: Any, out_dir: Path | str, *, timeout_s: float = 10.0) -> dict:
    """Read ``uploads``, ``content-enriched`` and ``erasure-requests`` to their current ends and
    write a CLIP dataset under ``out_dir``. Returns the manifest plus ``skipped`` counts.

    Raises :class:`streams.contracts.topics.TopicError` without a broker, :class:`streams.contracts.codec.CodecError`
    for an undecodable record.
    """
    from models.clip.taxonomy import load_taxonomy
    from replay.reader import read_topic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    uploads = [r for _, r in read_topic(settings, "uploads", timeout_s=timeout_s)]
    enrichments = [r for _, r in read_topic(settings, "content-enriched", timeout_s=timeout_s)]
    erasures = [r for _, r in read_topic(settings, "erasure-requests", timeout_s=timeout_s)]
    from streams.contracts.media import MediaRoots

    rows, skipped = clip_rows(uploads, enrichments, erasures, load_taxonomy(), out_dir,
                              MediaRoots.from_settings(settings))
    manifest = write_dataset(out_dir, rows, source="topics:uploads+content-enriched")
    return {**manifest, "skipped": skipped}


#: Interaction types that count as engagement for the collaborative model
#: (:mod:`models.ranking.collaborative`).
ENGAGEMENT_TYPES = frozenset({"LIKE", "COMMENT", "SHARE"})


def engagement_rows(interactions: Iterable[Mapping[str, Any]], published: Iterable[Mapping[str, Any]],
                    until_ms: int | None = None) -> list[tuple[int, str, str]]:
    """``(at ms, user, post)`` engagements (:data:`ENGAGEMENT_TYPES` interactions, and replies: a
    published post with a parent is its creator's engagement with the parent), never with one's
    own post, at or before ``until_ms`` (None: all), sorted."""
    creators: dict[str, str] = {}
    rows: list[tuple[int, str, str]] = []
    published = list(published)
    for r in published:
        creators[r["post_id"]] = r["creator_id"]
    for r in published:
        parent = r.get("parent_post_id")
        if parent:
            rows.append((_ms(r["event_time"]), r["creator_id"], parent))
    for r in interactions:
        if r.get("type") in ENGAGEMENT_TYPES:
            rows.append((_ms(r["event_time"]), r["user_id"], r["post_id"]))
    return sorted((at, u, p) for at, u, p in rows
                  if creators.get(p) != u and (until_ms is None or at <= until_ms))


def engagement_pairs(settings: Any, *, until_ms: int | None = None, timeout_s: float = 10.0) -> dict:
    """Read ``interactions`` and ``posts-published`` to their current ends: ``{"rows":
    engagement_rows(...), "training_data": a manifest (topics, messages read, end offsets, time
    range)}`` for :func:`models.ranking.collaborative.train`.

    Raises :class:`streams.contracts.topics.TopicError` without a broker, :class:`streams.contracts.codec.CodecError`
    for an undecodable record.
    """
    from replay.reader import read_topic

    ends: dict[str, dict[int, int]] = {}
    records: dict[str, list[dict]] = {}
    for topic in ("interactions", "posts-published"):
        got = list(read_topic(settings, topic, timeout_s=timeout_s))
        records[topic] = [r for _, r in got]
        last: dict[int, int] = {}
        for pos, _ in got:
            last[pos.partition] = max(last.get(pos.partition, -1), pos.offset)
        ends[topic] = {str(p): o + 1 for p, o in sorted(last.items())}
    rows = engagement_rows(records["interactions"], records["posts-published"], until_ms)
    manifest = {"topics": {t: {"messages": len(records[t]), "end_offsets": ends[t]} for t in records},
                "until_ms": until_ms, "engagements": len(rows),
                "first_ms": rows[0][0] if rows else None, "last_ms": rows[-1][0] if rows else None,
                "engagement": "LIKE, COMMENT, SHARE interactions and replies; not on one's own post"}
    return {"rows": rows, "training_data": manifest}
