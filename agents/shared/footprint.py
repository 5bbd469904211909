"""Side states that tell the eraser where a user's data lies (``agents/eraser.py``).

The eraser consumes ``erasure-requests`` (keyed by user); the user's posts arrive on ``uploads``
(keyed by post) and their review tasks on ``review-queue`` (keyed by post), so neither meets the
request in one partition. Both are therefore global side inputs (every eraser worker reads them
whole, :mod:`streams.runtime.side_inputs`) that answer *as of the request's event time*, so a
replay, which has read them whole first, finds the same footprint as the live run.

Memory: one small tuple per upload, per review task and per notification naming an actor (ids
and times, never text).
"""
from __future__ import annotations

import bisect
import threading
from typing import Any, NamedTuple

from streams.contracts.agent import ms_of


class Upload(NamedTuple):
    """One upload of a post (times in UTC epoch ms): what the views are keyed by."""

    uploaded_at: int
    post_id: str


class UserUploads:
    """Each creator's uploads as of a time (side state over ``uploads``). Thread-safe.

    ``posts_by_creator`` rows are keyed by ``(creator_id, uploaded_at, post_id)`` with the
    upload's event time (``agents/materializer.py``), so every distinct upload event of a post is
    kept: a post uploaded twice has two rows to delete.
    """

    def __init__(self) -> None:
        self._by_creator: dict[str, list[Upload]] = {}
        self._creator_of: dict[str, str] = {}
        # media URI -> {post_id: first upload time}; creator -> {(post_id, uri)}
        self._posts_of_media: dict[str, dict[str, int]] = {}
        self._media_of: dict[str, set[tuple[str, str]]] = {}
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``Upload`` record in (a re-delivered copy changes nothing)."""
        at = ms_of(record["event_time"])
        item = Upload(at, record["post_id"])
        uri = record.get("media_uri")
        with self._lock:
            uploads = self._by_creator.setdefault(record["creator_id"], [])
            i = bisect.bisect_left(uploads, item)
            if i == len(uploads) or uploads[i] != item:
                uploads.insert(i, item)
            self._creator_of.setdefault(record["post_id"], record["creator_id"])
            if uri:
                posts = self._posts_of_media.setdefault(uri, {})
                posts[record["post_id"]] = min(at, posts.get(record["post_id"], at))
                self._media_of.setdefault(record["creator_id"], set()).add((record["post_id"], uri))

    def media(self, creator_id: str, as_of_ms: int) -> list[tuple[str, str]]:
        """``(post_id, media_uri)`` of ``creator_id``'s uploads with media, at or before
        ``as_of_ms``, sorted."""
        with self._lock:
            return sorted((p, u) for p, u in self._media_of.get(creator_id, ())
                          if self._posts_of_media[u].get(p, as_of_ms + 1) <= as_of_ms)

    def posts_with_media(self, uri: str, as_of_ms: int) -> set[str]:
        """Every post (anyone's) whose upload at or before ``as_of_ms`` names ``uri``: the store
        is content-addressed, so identical uploads share one file."""
        with self._lock:
            return {p for p, at in self._posts_of_media.get(uri, {}).items() if at <= as_of_ms}

    def uploads(self, creator_id: str, as_of_ms: int) -> list[Upload]:
        """``creator_id``'s uploads at or before ``as_of_ms``, oldest first."""
        with self._lock:
            uploads = self._by_creator.get(creator_id, [])
            return uploads[:bisect.bisect_right(uploads, Upload(as_of_ms, "\U0010ffff"))]

    def creator_of(self, post_id: str) -> str | None:
        """Who uploaded ``post_id`` first (None: unknown post)."""
        with self._lock:
            return self._creator_of.get(post_id)


class TaskRef(NamedTuple):
    """A human review task as the views key it (``review_tasks``, ``review_pending``)."""

    created_at: int
    task_id: str
    queue: str


class ReviewTasks:
    """Review tasks by author and by post, as of a time (side state over ``review-queue``).
    Thread-safe. ``created_at`` is the task event's time, as ``review_pending`` is keyed
    (``agents/shared/review_tasks.py``)."""

    def __init__(self) -> None:
        self._by_author: dict[str, list[TaskRef]] = {}
        self._by_post: dict[str, list[TaskRef]] = {}
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``ReviewTask`` record in (a re-delivered copy changes nothing)."""
        ref = TaskRef(ms_of(record["event_time"]), record["task_id"], record.get("queue") or "moderation")
        with self._lock:
            for index, key in ((self._by_author, record.get("author_id")),
                               (self._by_post, record.get("post_id"))):
                if not key:
                    continue
                refs = index.setdefault(key, [])
                i = bisect.bisect_left(refs, ref)
                if i == len(refs) or refs[i] != ref:
                    refs.insert(i, ref)

    def _upto(self, refs: list[TaskRef], as_of_ms: int) -> list[TaskRef]:
        return refs[:bisect.bisect_right(refs, TaskRef(as_of_ms, "\U0010ffff", "\U0010ffff"))]

    def by_author(self, author_id: str, as_of_ms: int) -> list[TaskRef]:
        """Tasks about ``author_id``'s posts or comments, created at or before ``as_of_ms``."""
        with self._lock:
            return self._upto(self._by_author.get(author_id, []), as_of_ms)

    def by_post(self, post_id: str, as_of_ms: int) -> list[TaskRef]:
        """Tasks about ``post_id`` (its own review and its comments'), created at or before
        ``as_of_ms``."""
        with self._lock:
            return self._upto(self._by_post.get(post_id, []), as_of_ms)


class NotificationRef(NamedTuple):
    """A notification row as the ``notifications`` view keys it (times in UTC epoch ms)."""

    sent_at: int
    user_id: str
    notification_id: str


class NotificationsByActor:
    """The notifications other users received about an actor's doing (a like, a reply, a new
    follower), as of a time (side state over ``notifications``). Thread-safe.

    A decision to send or hold has a row in the recipient's ``notifications`` partition keyed by
    ``(user_id, sent_at = the decision's event time, notification_id)``
    (``agents/notification_generator.py``); dropped ones and digests (no actor) have none.
    Memory: one small tuple per notification with an actor (ids and a time)."""

    def __init__(self) -> None:
        self._by_actor: dict[str, list[NotificationRef]] = {}
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``Notification`` record in (a re-delivered copy changes nothing)."""
        actor, user = record.get("actor_id"), record.get("user_id")
        if not actor or not user or actor == user or record.get("action") == "DROP":
            return
        ref = NotificationRef(ms_of(record["event_time"]), user, record["notification_id"])
        with self._lock:
            refs = self._by_actor.setdefault(actor, [])
            i = bisect.bisect_left(refs, ref)
            if i == len(refs) or refs[i] != ref:
                refs.insert(i, ref)

    def about(self, actor_id: str, as_of_ms: int) -> list[NotificationRef]:
        """Other users' notifications naming ``actor_id``, sent at or before ``as_of_ms``."""
        with self._lock:
            refs = self._by_actor.get(actor_id, [])
            return refs[:bisect.bisect_right(refs, NotificationRef(as_of_ms, "\U0010ffff", "\U0010ffff"))]


class ReferenceMedia:
    """Media files registered works name (side state over ``copyright-references``), as of a
    time: a registration with only a ``media_uri`` is fingerprinted from its file whenever a
    worker reads the references, so the eraser must not delete a file a work names. Thread-safe."""

    def __init__(self) -> None:
        self._since: dict[str, int] = {}
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``CopyrightReference`` record in."""
        uri = record.get("media_uri")
        if uri:
            at = ms_of(record["event_time"])
            with self._lock:
                self._since[uri] = min(at, self._since.get(uri, at))

    def referenced(self, uri: str, as_of_ms: int) -> bool:
        """Whether a work registered at or before ``as_of_ms`` names ``uri``."""
        with self._lock:
            since = self._since.get(uri)
            return since is not None and since <= as_of_ms


def open_reference_media(config: Any, models: Any) -> ReferenceMedia:
    """``SideInput.open`` for ``copyright-references``."""
    return ReferenceMedia()


def open_notifications_by_actor(config: Any, models: Any) -> NotificationsByActor:
    """``SideInput.open`` for ``notifications``."""
    return NotificationsByActor()


def open_uploads(config: Any, models: Any) -> UserUploads:
    """``SideInput.open`` for ``uploads``."""
    return UserUploads()


def open_review_tasks(config: Any, models: Any) -> ReviewTasks:
    """``SideInput.open`` for ``review-queue``."""
    return ReviewTasks()
