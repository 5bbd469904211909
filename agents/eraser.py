"""The eraser: a data subject's right to erasure (GDPR art. 17, CCPA § 1798.105) on the views,
vectors and compacted topics.

Source ``erasure-requests`` (``ErasureRequest``, key user_id). Scope USER erases everything about
the user; scope POST one of the user's posts and what derives from it. ``pulse erase USER_ID``
publishes a request; ``docs/erasure.md`` has the whole design, and why each store is handled the
way it is.

Where a user's data lies is read from side inputs *as of the request's event time* (so a replay
finds what the live run found): the user's uploads (:class:`agents.shared.footprint.UserUploads`
over ``uploads``), published posts (``posts-published``: where a post sits in ``fresh_posts``),
the follow graph (``follows``: the user's rows in other users' ``following`` / ``followers``
partitions), review tasks (:class:`agents.shared.footprint.ReviewTasks` over
``review-queue``) and the notifications naming the user as actor (``notifications``). The
eraser keeps no state: the request and the side inputs say everything.

Effects, USER scope (user ``u``; every row deletion at :func:`erase_timestamp_us`):

* partition deletes of every view keyed by the user: ``users``, ``posts_by_creator``,
  ``following`` and ``followers`` (their own partitions), ``user_feeds``, ``profiles``,
  ``notifications``, ``golden_moments``, ``creator_stats``, ``pulled_posts``; the
  ``pull_creators`` row;
* the user's rows in other users' partitions: ``following`` (followers -> u) and ``followers``
  (u -> followees), and the ``notifications`` other users received about u's doing (u their
  actor: a like, a reply, a follow; :class:`agents.shared.footprint.NotificationsByActor` over
  ``notifications``);
* per post: ``posts``, ``moderation_log``, ``copyright_matches`` (partition deletes),
  ``fresh_posts`` (the published row), and a ``takedowns`` row (gate ``erasure``, no creator) so
  that every feed read drops the post at once, as for any takedown (``streams/query/feeds.py``);
* review tasks about the user or their posts: ``review_tasks``, ``review_pending``,
  ``review_claims``;
* vector points: ``content`` (the posts), ``user_interests`` (the user);
* media files (``MediaDelete``, the media sink): each file of the media store that the erased
  posts' uploads name and that no other post and no registered work names as of the request
  (the store is content-addressed, so identical uploads share a file;
  :class:`agents.shared.footprint.ReferenceMedia` over ``copyright-references``); files in
  read-only roots are never deleted;
* tombstones on compacted topics: ``profiles`` and ``feed-updates`` (key u),
  ``content-fingerprints`` (each post);
* the user's encryption key (``ShredKey``): their personal fields in the immutable log
  (captions, comments, handle, ...) become unreadable for every later replay, export and
  training set (crypto-shredding, ``streams/contracts/personal.py``);
* the report: ``erasure_log`` rows (request_id, ``eraser``, item) with counts, and the request
  row (``eraser``, ``request``).

Agents' state (the user's entries in stateful agents' tables) is forgotten by those agents
themselves: each consumes ``erasure-requests`` too and reports its own ``erasure_log`` rows.
"""
from __future__ import annotations

from typing import Any

from agents.shared.erasure import REPORT, report_rows
from agents.shared.footprint import (NotificationsByActor, ReferenceMedia, ReviewTasks, TaskRef, UserUploads,
                                     open_notifications_by_actor, open_reference_media, open_review_tasks,
                                     open_uploads)
from agents.shared.posts import PublishedPosts, open_published
from agents.shared.social import FollowGraph, open_follow_graph
from streams.contracts.agent import AgentSpec, Context, Event, SideInput, State
from streams.contracts.effects import Delete, Effect, MediaDelete, ShredKey, Tombstone, Upsert, VectorDelete

NAME = "eraser"
#: Views whose partition key is the user's id (column name of that key).
USER_PARTITIONS: dict[str, str] = {
    "users": "user_id", "posts_by_creator": "creator_id", "following": "follower_id",
    "followers": "followee_id", "user_feeds": "user_id", "profiles": "user_id",
    "notifications": "user_id", "golden_moments": "creator_id", "creator_stats": "creator_id",
    "pulled_posts": "creator_id",
}
#: Views whose partition key is a post id.
POST_PARTITIONS = ("posts", "moderation_log", "copyright_matches")
#: Compacted topics keyed by the user, and by post.
USER_TOPICS = ("profiles", "feed-updates")
POST_TOPICS = ("content-fingerprints",)
CONTENT, USER_INTERESTS = "content", "user_interests"
#: The ``takedowns`` gate name of an erased post.
ERASURE_GATE = "erasure"


def erase_timestamp_us(event_time_ms: int) -> int:
    """The write timestamp of every deletion: the end of the request's millisecond (µs).

    Agents stamp rows at their event's time plus at most 999 µs (a write counter within one
    millisecond, e.g. the user profiler's ``latest * 1000 + sequence``), so a deletion at
    ``event_time_ms * 1000 + 999`` shadows every row written for events up to the request's
    millisecond, and none written for later events."""
    return event_time_ms * 1000 + 999


class _Report:
    """Counts per item, turned into ``erasure_log`` rows."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, item: str, n: int = 1) -> None:
        self.counts[item] = self.counts.get(item, 0) + n


def _task_effects(tasks: list[TaskRef], ts: int, report: _Report) -> list[Effect]:
    out: list[Effect] = []
    for ref in sorted(set(tasks)):
        out += [Delete("review_tasks", {"task_id": ref.task_id}, ts),
                Delete("review_pending", {"queue": ref.queue, "created_at": ref.created_at,
                                          "task_id": ref.task_id}, ts),
                Delete("review_claims", {"task_id": ref.task_id}, ts)]
        report.add("view:review_tasks")
    return out


def _post_effects(user: str, post_ids: list[str], t: int, ts: int, published: PublishedPosts | None,
                  report: _Report) -> list[Effect]:
    """Deletions of the posts' rows, takedown rows for the published ones, their content points
    and fingerprint tombstones."""
    out: list[Effect] = []
    for post_id in post_ids:
        for table in POST_PARTITIONS:
            out.append(Delete(table, {"post_id": post_id}, ts))
            report.add(f"view:{table}")
        facts = published.get(post_id, t) if published is not None else None
        if facts is not None and facts.creator_id == user:
            out.append(Delete("fresh_posts", {"bucket": 0, "published_at": facts.published_at,
                                              "post_id": post_id}, ts))
            out.append(Upsert("takedowns", {"bucket": 0, "post_id": post_id, "creator_id": None,
                                            "taken_down_at": t, "gate": ERASURE_GATE,
                                            "reasons": ["erased at the creator's request"]}, ts))
            report.add("view:fresh_posts")
            report.add("view:takedowns")
        out.append(Tombstone("content-fingerprints", post_id))
        report.add("topic:content-fingerprints")
    if post_ids:
        out.append(VectorDelete(CONTENT, tuple(post_ids)))
        report.add(f"vectors:{CONTENT}", len(post_ids))
    return out


def _media_effects(user: str, erased_posts: set[str], t: int, side: dict[str, Any],
                   report: _Report) -> list[Effect]:
    """``MediaDelete`` of each media store file of the erased posts that no other post and no
    registered work names as of ``t`` (the store is content-addressed: identical uploads share
    a file). Files outside the store (read-only roots) are never deleted."""
    uploads: UserUploads | None = side.get("uploads")
    refs: ReferenceMedia | None = side.get("references")
    if uploads is None:
        return []
    out: list[Effect] = []
    for uri in sorted({u for p, u in uploads.media(user, t) if p in erased_posts}):
        if not uri.startswith("media:"):
            report.add("media:outside the store, not deleted")
        elif not uploads.posts_with_media(uri, t) <= erased_posts or (
                refs is not None and refs.referenced(uri, t)):
            report.add("media:kept, another post or a registered work has the same file")
        else:
            out.append(MediaDelete(uri))
            report.add("media:files deleted")
    return out


def erase_user(user: str, t: int, side: dict[str, Any], report: _Report) -> list[Effect]:
    """Every effect that erases ``user`` as of ``t`` (UTC epoch ms; module docstring)."""
    ts = erase_timestamp_us(t)
    uploads: UserUploads | None = side.get("uploads")
    graph: FollowGraph | None = side.get("follows")
    tasks: ReviewTasks | None = side.get("tasks")
    out: list[Effect] = []
    for table, column in USER_PARTITIONS.items():
        out.append(Delete(table, {column: user}, ts))
        report.add(f"view:{table}")
    out.append(Delete("pull_creators", {"bucket": 0, "creator_id": user}, ts))
    report.add("view:pull_creators")
    if graph is not None:
        for follower in graph.followers(user, t):
            out.append(Delete("following", {"follower_id": follower, "followee_id": user}, ts))
            report.add("view:following")
        for followee in graph.followees(user, t):
            out.append(Delete("followers", {"followee_id": followee, "follower_id": user}, ts))
            report.add("view:followers")
    post_ids = sorted({u.post_id for u in uploads.uploads(user, t)}) if uploads is not None else []
    out += _post_effects(user, post_ids, t, ts, side.get("published"), report)
    out += _media_effects(user, set(post_ids), t, side, report)
    if tasks is not None:
        refs = list(tasks.by_author(user, t))
        for post_id in post_ids:
            refs += tasks.by_post(post_id, t)
        out += _task_effects(refs, ts, report)
    notes: NotificationsByActor | None = side.get("notifications")
    if notes is not None:
        for ref in notes.about(user, t):
            out.append(Delete("notifications", {"user_id": ref.user_id, "sent_at": ref.sent_at,
                                                "notification_id": ref.notification_id}, ts))
            report.add("view:notifications (others', as actor)")
    out.append(VectorDelete(USER_INTERESTS, (user,)))
    report.add(f"vectors:{USER_INTERESTS}")
    for topic in USER_TOPICS:
        out.append(Tombstone(topic, user))
        report.add(f"topic:{topic}")
    out.append(ShredKey(user))
    report.add("keys:subject key shredded")
    return out


def erase_post(user: str, post_id: str, t: int, side: dict[str, Any], report: _Report) -> list[Effect]:
    """Every effect that erases ``user``'s post ``post_id`` as of ``t``; nothing when the post
    is not the user's (the report says so)."""
    uploads: UserUploads | None = side.get("uploads")
    mine = [u for u in uploads.uploads(user, t) if u.post_id == post_id] if uploads is not None else []
    if not mine:
        report.add("refused:not the user's post")
        return []
    ts = erase_timestamp_us(t)
    out: list[Effect] = [Delete("posts_by_creator", {"creator_id": user, "uploaded_at": u.uploaded_at,
                                                     "post_id": post_id}, ts) for u in mine]
    report.add("view:posts_by_creator", len(mine))
    out.append(Delete("creator_stats", {"creator_id": user, "post_id": post_id}, ts))
    report.add("view:creator_stats")
    published: PublishedPosts | None = side.get("published")
    facts = published.get(post_id, t) if published is not None else None
    if facts is not None:
        out.append(Delete("pulled_posts", {"creator_id": user, "published_at": facts.published_at,
                                           "post_id": post_id}, ts))
        report.add("view:pulled_posts")
    out += _post_effects(user, [post_id], t, ts, published, report)
    out += _media_effects(user, {post_id}, t, side, report)
    tasks: ReviewTasks | None = side.get("tasks")
    if tasks is not None:
        out += _task_effects(list(tasks.by_post(post_id, t)), ts, report)
    return out


def process(state: State, event: Event, ctx: Context) -> list[Effect]:
    """One erasure request -> the deletions, tombstones and report rows (module docstring)."""
    r = event.record
    user, t = r["user_id"], event.event_time_ms
    scope = str(r["scope"])
    report = _Report()
    if scope == "POST":
        if not r.get("post_id"):
            report.add("refused:scope POST without post_id")
            effects: list[Effect] = []
        else:
            effects = erase_post(user, r["post_id"], t, ctx.side, report)
    else:
        effects = erase_user(user, t, ctx.side, report)
    effects.append(Upsert(REPORT, {
        "request_id": r["request_id"], "component": NAME, "item": "request", "count": len(effects),
        "user_id": user, "scope": scope, "erased_at": t,
        "detail": f"{r['legal_basis']}" + (f" post {r['post_id']}" if r.get("post_id") else "")},
        t * 1000))
    effects += report_rows(r, NAME, report.counts, t)
    return effects


SPEC = AgentSpec(
    name=NAME,
    topics=("erasure-requests",),
    process=process,
    outputs=USER_TOPICS + POST_TOPICS,
    doc="Erasure (GDPR art. 17 / CCPA): a user's or a post's rows, vector points and compacted keys.",
    sinks=frozenset({"cassandra", "vectors", "media"}),
    side_inputs=(SideInput("uploads", "uploads", open_uploads),
                 SideInput("published", "posts-published", open_published),
                 SideInput("follows", "follows", open_follow_graph),
                 SideInput("tasks", "review-queue", open_review_tasks),
                 SideInput("notifications", "notifications", open_notifications_by_actor),
                 SideInput("references", "copyright-references", open_reference_media)),
)
