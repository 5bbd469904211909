"""Replay and export on the real broker and Cassandra: a rebuild with no worker running fills the
views, a second rebuild leaves identical rows and write times, a time range replays just that
range in timestamp order, dead letters are only counted unless --emit, and a topic exports to
Parquet with the contract's column types. The topics are shared with the session's other tests,
so every check filters by this test's unique ids."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone

import pyarrow as pa
import pytest
import pyarrow.parquet as pq
from cassandra.query import ValueSequence
from confluent_kafka import Producer

import replay.export
import replay.reader
from replay.export import export_topic, export_topics
from replay.reader import read_topic
from replay.rebuild import read_merged, rebuild_views
from streams.contracts.codec import CodecError
from streams.producer import Publisher
from streams.settings import REPO_ROOT
from streams.query.views import follow_summary, posts_by_creator, view_session

from tests.integration.conftest import unique, wait_until, worker_env
from tests.integration.test_publish import upload_line

T0 = 1_540_000_000_000


def now_ms() -> int:
    return int(time.time() * 1000)


def tick() -> int:
    """A Kafka-timestamp boundary strictly between what was produced before and after it."""
    time.sleep(0.05)
    t = now_ms()
    time.sleep(0.05)
    return t


def view_state(settings, creator: str, fans: list[str]) -> dict:
    """Every view row of ``creator`` and ``fans`` with its write time (microseconds); collection
    columns are left to :func:`test_replay_leaves_list_columns_as_they_were`."""
    with view_session(settings) as s:
        def rows(cql, *args):
            return sorted(tuple(r) for r in s.execute(cql, args))
        return {
            "posts_by_creator": rows("SELECT post_id, uploaded_at, caption, WRITETIME(caption) "
                                     "FROM posts_by_creator WHERE creator_id = %s", creator),
            "posts": rows("SELECT post_id, caption, kind, WRITETIME(caption) FROM posts "
                          "WHERE post_id IN %s", ValueSequence(f"{creator}-p{i}" for i in range(3))),
            "users": rows("SELECT user_id, handle, WRITETIME(handle) FROM users WHERE user_id = %s", creator),
            "following": rows("SELECT follower_id, followee_id, since, WRITETIME(since) FROM following "
                              "WHERE follower_id IN %s", ValueSequence(fans)),
            "followers": rows("SELECT followee_id, follower_id, since, WRITETIME(since) FROM followers "
                              "WHERE followee_id = %s", creator),
        }


def test_rebuild_fills_the_views_and_a_second_rebuild_leaves_identical_rows(pipeline):
    creator, fan1, fan2 = unique("c"), unique("u"), unique("u")
    with Publisher(pipeline, producer_name="test-replay") as pub:
        pub.publish("signups", {"user_id": creator, "handle": "grace", "declared_interests": ["cobol"],
                                "locale": None, "country": None, "about": None, "event_time": T0})
        for i in range(3):
            pub.publish("uploads", upload_line(f"{creator}-p{i}", creator, event_time=T0 + i * 1000,
                                               caption=f"post {i}"))
        pub.publish("follows", {"follower_id": fan1, "followee_id": creator, "action": "FOLLOW",
                                "event_time": T0 + 10})
        pub.publish("follows", {"follower_id": fan2, "followee_id": creator, "action": "FOLLOW",
                                "event_time": T0 + 11})
        pub.publish("follows", {"follower_id": fan1, "followee_id": creator, "action": "UNFOLLOW",
                                "event_time": T0 + 20})
    assert posts_by_creator(pipeline, creator) == []  # no worker has run: the views are empty

    first = rebuild_views(pipeline, ["materializer"])
    assert first["agents"] == ["materializer"]
    assert first["topics"]["uploads"] >= 3 and first["topics"]["follows"] >= 3
    assert first["effects"] >= 2 * 3 + 1 + 2 * 3 and first["emits_published"] == 0
    rows = posts_by_creator(pipeline, creator)
    assert [r["post_id"] for r in rows] == [f"{creator}-p{i}" for i in (2, 1, 0)]
    assert rows[0]["uploaded_at"] == datetime.fromtimestamp((T0 + 2000) / 1000, timezone.utc).replace(tzinfo=None)
    assert follow_summary(pipeline, creator)["followers"] == 1      # fan2 only
    assert follow_summary(pipeline, fan1)["following"] == 0         # the UNFOLLOW removed the edge
    assert follow_summary(pipeline, fan2)["following"] == 1
    before = view_state(pipeline, creator, [fan1, fan2])
    assert before["users"] == [(creator, "grace", T0 * 1000)]       # written at the event's time
    assert {r[-1] for r in before["posts"]} == {(T0 + i * 1000) * 1000 for i in range(3)}

    second = rebuild_views(pipeline, ["materializer"])
    assert second["events"] >= first["events"]
    assert view_state(pipeline, creator, [fan1, fan2]) == before


def test_replay_leaves_list_columns_as_they_were(pipeline):
    creator = unique("c")
    start = tick()
    with Publisher(pipeline, producer_name="test-replay") as pub:
        pub.publish("signups", {"user_id": creator, "handle": "h", "declared_interests": ["x", "y"],
                                "locale": None, "country": None, "about": None, "event_time": T0})
        pub.publish("uploads", upload_line(f"{creator}-p0", creator, event_time=T0, hashtags=["a", "b"]))
    for _ in range(2):
        rebuild_views(pipeline, ["materializer"], start_ms=start)
    with view_session(pipeline) as s:
        post = s.execute("SELECT hashtags FROM posts WHERE post_id = %s", (f"{creator}-p0",)).one()
        feed = s.execute("SELECT hashtags FROM posts_by_creator WHERE creator_id = %s", (creator,)).one()
        user = s.execute("SELECT declared_interests FROM users WHERE user_id = %s", (creator,)).one()
    assert (post.hashtags, feed.hashtags, user.declared_interests) == (["a", "b"], ["a", "b"], ["x", "y"])


def test_a_time_range_replays_only_that_range_in_timestamp_order_and_counts_dead_letters(pipeline):
    early, creator, fan = unique("c"), unique("c"), unique("u")
    garbage = b"\xc3\x01" + unique("junk").encode()
    raw = Producer({"bootstrap.servers": pipeline.kafka_bootstrap})
    with Publisher(pipeline, producer_name="test-replay") as pub:
        pub.publish("uploads", upload_line(f"{early}-p0", early, event_time=T0))
        start = tick()
        pub.publish("uploads", upload_line(f"{creator}-p0", creator, event_time=T0))
        time.sleep(0.02)
        pub.publish("follows", {"follower_id": fan, "followee_id": creator, "action": "FOLLOW",
                                "event_time": T0 + 1})
        time.sleep(0.02)
        pub.publish("uploads", upload_line(f"{creator}-p1", creator, event_time=T0 + 1000))
        time.sleep(0.02)
        raw.produce("follows", key=fan.encode(), value=garbage)
        raw.flush(10)
        end = tick()
        pub.publish("uploads", upload_line(f"{creator}-p2", creator, event_time=T0 + 2000))

    merged = list(read_merged(pipeline, ["uploads", "follows"], start_ms=start, end_ms=end))
    assert [(m.topic, m.key) for m in merged] == [
        ("uploads", f"{creator}-p0".encode()), ("follows", fan.encode()),
        ("uploads", f"{creator}-p1".encode()), ("follows", fan.encode())]
    assert all(start <= m.timestamp_ms < end for m in merged)

    r = rebuild_views(pipeline, ["materializer"], start_ms=start, end_ms=end)
    assert r["topics"] == {"uploads": 2, "signups": 0, "follows": 2}
    assert (r["effects"], r["dead_letters"], r["dead_letters_published"]) == (6, 1, 0)
    dl = r["dead_letter_list"][0]
    assert (dl["topic"], dl["offset"]) == ("follows", merged[-1].offset) and dl["reason"]
    assert [p["post_id"] for p in posts_by_creator(pipeline, creator)] == [f"{creator}-p1", f"{creator}-p0"]
    assert posts_by_creator(pipeline, early) == []
    assert follow_summary(pipeline, creator)["followers"] == 1
    assert not [d for _, d in read_topic(pipeline, "dead-letters") if d["value"] == garbage]

    again = rebuild_views(pipeline, ["materializer"], start_ms=start, end_ms=end, emit=True)
    assert (again["dead_letters"], again["dead_letters_published"], again["emits_published"]) == (1, 1, 0)
    found = wait_until(lambda: [d for _, d in read_topic(pipeline, "dead-letters") if d["value"] == garbage],
                       30, "the re-published dead letter")
    assert len(found) == 1
    assert (found[0]["source_topic"], found[0]["consumer"], found[0]["offset"]) == \
        ("follows", "materializer", merged[-1].offset)


def test_export_writes_the_topic_to_parquet_with_contract_types(pipeline, tmp_path):
    creator = unique("c")
    with Publisher(pipeline, producer_name="test-export") as pub:
        pub.publish("uploads", upload_line(f"{creator}-p0", creator, event_time=T0, title="Hello",
                                           kind="IMAGE", media_uri="file:///a.jpg", width=640,
                                           height=480, size_bytes=12345, hashtags=["a", "b"]))
        pub.publish("uploads", upload_line(f"{creator}-p1", creator, event_time=T0 + 1,
                                           parent_post_id=f"{creator}-p0"))
    positions = {r["post_id"]: p for p, r in read_topic(pipeline, "uploads", on_error="skip")
                 if r["creator_id"] == creator}
    out = tmp_path / "uploads.parquet"
    result = export_topic(pipeline, "uploads", out, row_group_size=2, skip_undecodable=True)
    table = pq.read_table(out)
    assert result["rows"] == table.num_rows >= 2 and result["path"] == str(out)
    assert pq.ParquetFile(out).metadata.num_row_groups == result["row_groups"] == -(-table.num_rows // 2)
    types = {f.name: f.type for f in table.schema}
    assert types["event_time"] == pa.timestamp("ms", tz="UTC")
    assert types["hashtags"] == pa.list_(pa.field("item", pa.string(), nullable=False))
    assert (types["kind"], types["width"], types["size_bytes"]) == (pa.string(), pa.int32(), pa.int64())
    assert (types["_topic"], types["_partition"], types["_offset"], types["_timestamp_ms"]) == \
        (pa.string(), pa.int32(), pa.int64(), pa.int64())
    mine = sorted((r for r in table.to_pylist() if r["creator_id"] == creator), key=lambda r: r["post_id"])
    assert [r["post_id"] for r in mine] == [f"{creator}-p0", f"{creator}-p1"]
    p0, p1 = mine
    assert p0["event_time"] == datetime.fromtimestamp(T0 / 1000, timezone.utc)
    assert (p0["kind"], p0["title"], p0["width"], p0["hashtags"]) == ("IMAGE", "Hello", 640, ["a", "b"])
    assert (p1["title"], p1["width"], p1["parent_post_id"]) == (None, None, f"{creator}-p0")
    for r in mine:
        pos = positions[r["post_id"]]
        assert (r["_topic"], r["_partition"], r["_offset"], r["_timestamp_ms"]) == \
            ("uploads", pos.partition, pos.offset, pos.timestamp_ms)


def test_a_parallel_export_writes_the_rows_of_a_one_process_export_each_partition_in_order(
        pipeline, tmp_path):
    """Two processes (jobs=2) each read a share of the partitions; the file holds the rows a
    one-process export writes, each partition's in offset order, and a message that does not
    decode in a process stops the export with its position, leaving no file."""
    start = tick()
    fans = [unique("u") for _ in range(24)]
    creator = unique("c")
    with Publisher(pipeline, producer_name="test-export-jobs") as pub:
        for i, fan in enumerate(fans):
            pub.publish("follows", {"follower_id": fan, "followee_id": creator, "action": "FOLLOW",
                                    "event_time": T0 + i})
    assert len({p.partition for p, r in read_topic(pipeline, "follows", start_ms=start, on_error="skip")
                if r["followee_id"] == creator}) >= 2  # 24 keys land on more than one of 4 partitions
    one = export_topic(pipeline, "follows", tmp_path / "one.parquet", start_ms=start, jobs=1,
                       row_group_size=5)
    two = export_topic(pipeline, "follows", tmp_path / "two.parquet", start_ms=start, jobs=2,
                       row_group_size=5)
    assert (one["jobs"], two["jobs"]) == (1, 2)
    rows_one, rows_two = (pq.read_table(tmp_path / f).to_pylist() for f in ("one.parquet", "two.parquet"))
    key = lambda r: (r["_partition"], r["_offset"])  # noqa: E731
    assert sorted(rows_two, key=key) == sorted(rows_one, key=key) and len(rows_one) == one["rows"] == two["rows"]
    assert {r["follower_id"] for r in rows_two if r["followee_id"] == creator} == set(fans)
    for p in {r["_partition"] for r in rows_two}:  # a partition is read by one process, in order
        offsets = [r["_offset"] for r in rows_two if r["_partition"] == p]
        assert offsets == sorted(offsets)

    garbage = b"\xc3\x01" + unique("junk").encode()
    raw = Producer({"bootstrap.servers": pipeline.kafka_bootstrap})
    delivered = []
    raw.produce("follows", key=creator.encode(), value=garbage,
                on_delivery=lambda err, msg: delivered.append((msg.partition(), msg.offset())))
    raw.flush(10)
    (partition, offset), = delivered
    with pytest.raises(CodecError, match=rf"follows\[{partition}\]@{offset}:"):
        export_topic(pipeline, "follows", tmp_path / "bad.parquet", start_ms=start, jobs=2)
    skipped = export_topic(pipeline, "follows", tmp_path / "skipped.parquet", start_ms=start, jobs=2,
                           skip_undecodable=True)
    assert skipped["rows"] == one["rows"] and skipped["jobs"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.parquet", "skipped.parquet", "two.parquet"]


def test_topics_exported_together_in_processes_write_what_each_alone_writes(pipeline, tmp_path,
                                                                             monkeypatch):
    """Two topics, one with personal fields, exported together by two processes claiming
    partitions, with every subject's key read in one scan first: each file holds the rows of
    that topic exported alone in one process with its keys read batch by batch (decrypted the
    same way), each partition in offset order."""
    start = tick()
    users = [unique("u") for _ in range(12)]
    with Publisher(pipeline, producer_name="test-export-together") as pub:
        for i, user in enumerate(users):
            pub.publish("signups", {"user_id": user, "handle": f"h{i}", "declared_interests": [],
                                    "locale": None, "country": None, "about": f"about {user}",
                                    "event_time": T0 + i})
            pub.publish("follows", {"follower_id": user, "followee_id": users[0], "action": "FOLLOW",
                                    "event_time": T0 + i})
    def limit_scans(n: int) -> None:  # the one-process path asks replay.reader's, the others export's
        for module in (replay.export, replay.reader):
            monkeypatch.setattr(module, "scan_limit", lambda *_: n)

    limit_scans(0)
    alone = {t: export_topic(pipeline, t, tmp_path / f"{t}-alone.parquet", start_ms=start)
             for t in ("signups", "follows")}
    assert not any(r["keys_scanned"] for r in alone.values())
    limit_scans(1_000_000)
    progress: dict[str, int] = {}
    together = export_topics(pipeline, {t: tmp_path / f"{t}.parquet" for t in ("signups", "follows")},
                             start_ms=start, jobs=2, on_progress=progress.__setitem__)
    assert [r["topic"] for r in together] == ["signups", "follows"]
    assert all(r["jobs"] == 2 and r["keys_scanned"] for r in together)
    key = lambda r: (r["_partition"], r["_offset"])  # noqa: E731
    for r in together:
        rows = pq.read_table(r["path"]).to_pylist()
        assert sorted(rows, key=key) == sorted(pq.read_table(alone[r["topic"]]["path"]).to_pylist(), key=key)
        assert len(rows) == r["rows"] == alone[r["topic"]]["rows"] == progress[r["topic"]] >= 12
        for p in {row["_partition"] for row in rows}:
            offsets = [row["_offset"] for row in rows if row["_partition"] == p]
            assert offsets == sorted(offsets)
    abouts = {row["user_id"]: row["about"] for row in pq.read_table(tmp_path / "signups.parquet").to_pylist()}
    assert all(abouts[u] == f"about {u}" for u in users)  # opened with the scanned keys
    with pytest.raises(replay.export.ExportError, match="same file"):
        export_topics(pipeline, {"signups": tmp_path / "x.parquet", "follows": tmp_path / "x.parquet"})


def _pulse(pipeline, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=worker_env(pipeline, "cli"),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_cli_replay_and_export(pipeline, tmp_path):
    user, creator = unique("u"), unique("c")
    start = datetime.fromtimestamp(tick() / 1000, timezone.utc).isoformat(timespec="milliseconds")
    with Publisher(pipeline, producer_name="test-cli") as pub:
        pub.publish("signups", {"user_id": user, "handle": "ada", "declared_interests": [],
                                "locale": None, "country": None, "about": None, "event_time": T0})
        pub.publish("uploads", upload_line(f"{creator}-p0", creator, event_time=T0))

    out = _pulse(pipeline, "replay", "rebuild", "--agents", "materializer", "--from", start)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "view rows and points written" in out.stdout
    with view_session(pipeline) as s:
        assert s.execute("SELECT handle FROM users WHERE user_id = %s", (user,)).one().handle == "ada"

    path = tmp_path / "uploads.parquet"
    out = _pulse(pipeline, "export", "uploads", "--out", str(path), "--from", start)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "rows written to" in out.stdout
    assert f"{creator}-p0" in pq.read_table(path).column("post_id").to_pylist()

    bad = _pulse(pipeline, "export", "uploads", "--out", str(path), "--from", "last tuesday")
    assert bad.returncode == 2 and "ISO-8601" in bad.stderr and "Traceback" not in bad.stderr

    out_dir = tmp_path / "topics"
    out_dir.mkdir()
    out = _pulse(pipeline, "export", "uploads", "signups", "--out-dir", str(out_dir), "--from", start,
                 "--jobs", "2")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "2 processes" in out.stdout
    assert f"{creator}-p0" in pq.read_table(out_dir / "uploads.parquet").column("post_id").to_pylist()
    assert user in pq.read_table(out_dir / "signups.parquet").column("user_id").to_pylist()
    both = _pulse(pipeline, "export", "uploads", "signups", "--out", str(path))
    assert both.returncode == 2 and "--out-dir" in both.stderr and "Traceback" not in both.stderr
