"""The eraser's core on a captured footprint: two users, one erased; every view keyed by the
user, their rows in others' partitions, their posts' rows, points and fingerprints, review tasks,
the tombstones and the report; the other user untouched. Runs through the worker's engine."""
from __future__ import annotations

import pytest

from agents.eraser import SPEC, erase_timestamp_us
from agents.shared.footprint import NotificationsByActor, ReferenceMedia, ReviewTasks, UserUploads
from agents.shared.posts import PublishedPosts
from agents.shared.social import FollowGraph
from streams.contracts.effects import Delete, MediaDelete, Upsert, VectorDelete
from tests.unit.agent_harness import Harness

T = 1_700_000_000_000
ERASE_AT = T + 10_000_000


def _published(post_id, creator, at):
    return {"event_id": f"00000000-0000-4000-8000-{abs(hash(post_id)) % 10**12:012d}", "event_time": at,
            "post_id": post_id, "creator_id": creator, "uploaded_at": at - 1000, "kind": "TEXT",
            "content_type": "FOREVER", "distribution": "FULL", "expires_at": None, "hashtags": [],
            "categories": {}, "quality_score": None, "parent_post_id": None}


MEDIA_A = "media:sha256/aa/aa" + "0" * 62 + ".jpg"   # only ada's p1
MEDIA_B = "media:sha256/bb/bb" + "0" * 62 + ".mp4"   # ada's p2 and bob's p3: the same bytes


def footprint():
    """Ada (erased) posted p1 and p2 (p2 twice uploaded, p1 published), follows bob and is
    followed by cy; bob posted p3 and follows ada. A review task about ada's comment on p3."""
    uploads, published, graph, tasks = UserUploads(), PublishedPosts(), FollowGraph(), ReviewTasks()
    for at, post, creator, uri in ((T, "p1", "ada", MEDIA_A), (T + 5, "p2", "ada", MEDIA_B),
                                   (T + 6, "p2", "ada", MEDIA_B), (T + 7, "p3", "bob", MEDIA_B)):
        uploads.apply({"event_time": at, "post_id": post, "creator_id": creator, "media_uri": uri})
    published.apply(_published("p1", "ada", T + 100))
    published.apply(_published("p3", "bob", T + 100))
    for i, (a, b, action) in enumerate((("ada", "bob", "FOLLOW"), ("cy", "ada", "FOLLOW"),
                                         ("bob", "ada", "FOLLOW"), ("bob", "ada", "UNFOLLOW"))):
        graph.apply({"event_time": T + i, "event_id": f"f{i}", "follower_id": a, "followee_id": b,
                     "action": action})
    tasks.apply({"event_time": T + 50, "task_id": "1700000000050-aaaaaaaaaaaa", "queue": "moderation",
                 "post_id": "p3", "author_id": "ada"})
    tasks.apply({"event_time": T + 60, "task_id": "1700000000060-bbbbbbbbbbbb", "queue": "moderation",
                 "post_id": "p3", "author_id": "bob"})
    # an upload after the request is not erased (the footprint is as of the request's time)
    uploads.apply({"event_time": ERASE_AT + 1, "post_id": "p9", "creator_id": "ada"})
    notes = NotificationsByActor()
    for at, nid, user, actor, action in ((T + 200, "n1", "bob", "ada", "SEND"), (T + 300, "n2", "cy", "ada", "HOLD"),
                                         (T + 400, "n3", "cy", "ada", "DROP"), (T + 500, "n4", "ada", "bob", "SEND"),
                                         (ERASE_AT + 1, "n5", "bob", "ada", "SEND")):
        notes.apply({"event_time": at, "notification_id": nid, "user_id": user, "actor_id": actor,
                     "action": action})
    refs = ReferenceMedia()
    refs.apply({"event_time": ERASE_AT + 5, "media_uri": MEDIA_A})  # registered after the request
    return {"uploads": uploads, "published": published, "follows": graph, "tasks": tasks,
            "notifications": notes, "references": refs}


def request(scope="USER", post_id=None, user="ada"):
    return {"event_id": "9a4c1f0e-0000-4000-8000-000000000001", "event_time": ERASE_AT, "producer": "t",
            "request_id": "req-1", "user_id": user, "scope": scope, "post_id": post_id,
            "legal_basis": "GDPR", "deadline": None}


def run(tmp_path, record):
    h = Harness(SPEC, tmp_path, side=footprint())
    return h, h.feed(("erasure-requests", record))


def test_user_erasure_removes_every_view_point_and_compacted_key(tmp_path):
    h, out = run(tmp_path, request())
    assert not out.dead_letters
    ts = erase_timestamp_us(ERASE_AT)
    deletes = {(e.table, tuple(sorted(e.key.items()))) for e in out.views if isinstance(e, Delete)}
    assert all(e.timestamp_us == ts for e in out.views if isinstance(e, Delete))
    for table, col in (("users", "user_id"), ("posts_by_creator", "creator_id"), ("following", "follower_id"),
                       ("followers", "followee_id"), ("user_feeds", "user_id"), ("profiles", "user_id"),
                       ("notifications", "user_id"), ("golden_moments", "creator_id"),
                       ("creator_stats", "creator_id"), ("pulled_posts", "creator_id")):
        assert (table, ((col, "ada"),)) in deletes, table
    # ada's own file goes; the one bob's post shares stays
    assert [e.uri for e in out.views if isinstance(e, MediaDelete)] == [MEDIA_A]
    # other users' notifications about ada's doing: sent and held ones, not a dropped one (no
    # row), not one after the request, not bob's doing
    others = sorted(k for t, k in deletes if t == "notifications" and k != (("user_id", "ada"),))
    assert others == [(("notification_id", "n1"), ("sent_at", T + 200), ("user_id", "bob")),
                      (("notification_id", "n2"), ("sent_at", T + 300), ("user_id", "cy"))]
    # ada's rows in other users' partitions: cy follows ada; ada follows bob (bob unfollowed ada)
    assert ("following", (("followee_id", "ada"), ("follower_id", "cy"))) in deletes
    assert ("followers", (("followee_id", "bob"), ("follower_id", "ada"))) in deletes
    assert ("following", (("followee_id", "ada"), ("follower_id", "bob"))) not in deletes
    for post in ("p1", "p2"):
        for table in ("posts", "moderation_log", "copyright_matches"):
            assert (table, (("post_id", post),)) in deletes
    assert ("fresh_posts", (("bucket", 0), ("post_id", "p1"), ("published_at", T + 100))) in deletes
    assert not any("p3" in str(k) or "p9" in str(k) for _, k in deletes)  # bob's post, a later upload
    takedown = [e for e in out.views if isinstance(e, Upsert) and e.table == "takedowns"]
    assert [(e.row["post_id"], e.row["creator_id"], e.row["gate"]) for e in takedown] == [("p1", None, "erasure")]
    # the task about ada's comment goes; bob's own task stays
    assert ("review_tasks", (("task_id", "1700000000050-aaaaaaaaaaaa"),)) in deletes
    assert ("review_pending", (("created_at", T + 50), ("queue", "moderation"),
                               ("task_id", "1700000000050-aaaaaaaaaaaa"))) in deletes
    assert not any("bbbbbbbbbbbb" in str(k) for _, k in deletes)
    vectors = {(e.collection, e.ids) for e in out.views if isinstance(e, VectorDelete)}
    assert vectors == {("content", ("p1", "p2")), ("user_interests", ("ada",))}
    tombstones = {(e.topic, e.key) for e in out.emits}
    assert tombstones == {("profiles", b"ada"), ("feed-updates", b"ada"),
                          ("content-fingerprints", b"p1"), ("content-fingerprints", b"p2")}
    assert all(e.value is None for e in out.emits)
    report = {e.row["item"]: e.row for e in out.views if isinstance(e, Upsert) and e.table == "erasure_log"}
    assert report["request"]["user_id"] == "ada" and report["request"]["scope"] == "USER"
    assert report["view:posts"]["count"] == 2 and report["vectors:content"]["count"] == 2
    assert report["view:following"]["count"] == 2  # ada's partition and cy's row
    assert report["topic:content-fingerprints"]["count"] == 2
    assert report["done"]["count"] == sum(r["count"] for i, r in report.items() if i not in ("done", "request"))
    assert all(r["request_id"] == "req-1" and r["component"] == "eraser" for r in report.values())


def test_a_replay_of_the_request_gives_the_same_effects(tmp_path):
    _, a = run(tmp_path / "a", request())
    _, b = run(tmp_path / "b", request())
    assert a.views == b.views and a.emits == b.emits


def test_post_erasure_touches_only_that_post_and_refuses_another_users(tmp_path):
    _, out = run(tmp_path, request("POST", "p2"))
    keys = [(e.table, e.key) for e in out.views if isinstance(e, Delete)]
    assert ("posts", {"post_id": "p2"}) in keys
    assert [k for t, k in keys if t == "posts_by_creator"] == [
        {"creator_id": "ada", "uploaded_at": T + 5, "post_id": "p2"},
        {"creator_id": "ada", "uploaded_at": T + 6, "post_id": "p2"}]
    assert not any(t in ("users", "profiles", "notifications") for t, _ in keys)
    assert {(e.topic, e.key) for e in out.emits} == {("content-fingerprints", b"p2")}
    _, refused = run(tmp_path / "r", request("POST", "p3"))  # bob's post
    assert not [e for e in refused.views if isinstance(e, Delete)] and not refused.emits
    items = {e.row["item"] for e in refused.views if isinstance(e, Upsert)}
    assert "refused:not the user's post" in items


def test_tombstones_only_on_declared_compacted_topics(tmp_path):
    from streams.contracts.agent import AgentSpec
    from streams.contracts.effects import Tombstone

    bad = AgentSpec(name="bad", topics=("erasure-requests",), outputs=("uploads",),
                    process=lambda s, e, c: [Tombstone("uploads", "p1")])
    h = Harness(bad, tmp_path)
    out = h.feed(("erasure-requests", request()))
    assert not out.emits and "compacted" in h.decode(out.dead_letters[0])["reason"]


def test_a_tombstone_on_a_compacted_source_is_skipped_not_dead_lettered(tmp_path):
    from agents.feed_ranker import SPEC as RANKER

    h = Harness(RANKER, tmp_path, side={s.name: s.open(None, None) for s in RANKER.side_inputs})
    out = h.run([h.message("profiles", None, key=b"ada")])
    assert out.tombstones == 1 and not out.dead_letters and not out.views
    assert h.table("__positions__") == {"profiles:0": 1}  # the position still moves on


def test_the_user_key_is_shredded_through_the_cassandra_sink(tmp_path):
    from streams.contracts.effects import ShredKey
    from streams.sinks.writers import CassandraSink, SinkError

    _, out = run(tmp_path, request())
    assert [e for e in out.views if isinstance(e, ShredKey)] == [ShredKey("ada")]

    class Keys:
        shredded: list = []

        def shred(self, subject):
            self.shredded.append(subject)

    keys = Keys()
    sink = CassandraSink(session=None, keys=keys)
    sink.add(ShredKey("ada"))
    assert len(sink) == 1 and sink.flush() == 1 and keys.shredded == ["ada"] and len(sink) == 0
    with pytest.raises(SinkError, match="subject key store"):
        CassandraSink(session=None).add(ShredKey("ada"))
    _, post = run(tmp_path / "p", request("POST", "p2"))
    assert not [e for e in post.views if isinstance(e, ShredKey)]  # one post: the user's key stays


def test_media_files_go_only_when_nothing_else_names_them():
    """_media_effects: a file another post (anyone's) or a registered work names is kept; files
    outside the store are never deleted; POST scope deletes only that post's unshared file."""
    from agents.eraser import _Report, _media_effects

    side = footprint()
    side["uploads"].apply({"event_time": T + 8, "post_id": "p4", "creator_id": "ada",
                           "media_uri": "file:///srv/demo/photo.jpg"})
    report = _Report()
    out = _media_effects("ada", {"p1", "p2", "p4"}, ERASE_AT, side, report)
    assert [e.uri for e in out] == [MEDIA_A]
    assert report.counts == {"media:files deleted": 1, "media:outside the store, not deleted": 1,
                             "media:kept, another post or a registered work has the same file": 1}
    side["references"].apply({"event_time": T, "media_uri": MEDIA_A})  # a work names ada's file
    assert _media_effects("ada", {"p1"}, ERASE_AT, side, _Report()) == []
    assert _media_effects("ada", {"p2"}, ERASE_AT, footprint(), _Report()) == []  # bob's p3 shares it
    assert [e.uri for e in _media_effects("ada", {"p1"}, ERASE_AT, footprint(), _Report())] == [MEDIA_A]


def test_the_media_sink_deletes_store_files_and_nothing_else(tmp_path):
    """MediaSink over a real MediaStore directory: a stored file is deleted, a missing one is
    fine, names outside the store's layout are refused and logged, a dry sink only counts."""
    from streams.sinks.writers import MediaSink
    from streams.stores.media import MediaStore

    store = MediaStore(tmp_path / "media", 10_000)
    stored = store.put_stream([b"ada's photo"], "jpg")
    other = store.put_stream([b"bob's photo"], "jpg")
    outside = tmp_path / "secret.txt"
    outside.write_text("not the store's")
    dry = MediaSink(store, dry=True)
    dry.add(MediaDelete(stored.uri))
    assert dry.flush() == 1 and stored.path.exists()
    sink = MediaSink(store)
    for uri in (stored.uri, stored.uri, "media:../../secret.txt", f"file://{outside}", "media:sha256/zz/x.jpg"):
        sink.add(MediaDelete(uri))
    assert sink.flush() == 5 and len(sink) == 0
    assert not stored.path.exists() and other.path.exists() and outside.exists()
    assert sink.deleted == 1 and sink.skipped == 3


def test_the_runtime_opens_the_media_sink_live_and_dry_for_a_rebuild_of_its_own(tmp_path):
    from streams.runtime.binding import RuntimeContext
    from streams.settings import Settings

    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_MEDIA_ROOT": str(tmp_path / "media")})
    live = RuntimeContext(settings).sinks({"media"})
    assert live.media is not None and not live.media.dry and live.media.store.root == tmp_path / "media"
    assert RuntimeContext(settings, keyspace="rebuilt_x").sinks({"media"}).media.dry
