"""``pulse bench feeds``: feed reads, fan-out cost and upload-to-feed latency, with same-run
baselines.

Three measurements (:func:`run_feeds_bench`), on servers of its own in a temporary ``PULSE_HOME``
(or the given settings):

* **feed reads**: ``users`` feeds of ``items`` posts written into ``user_feeds`` as feed_ranker
  writes them (signals, 384-d interest vector, affinities), and a fresh pool of
  ``feed_fresh_pool`` posts published after every one of those rankings (the worst case: each
  read ranks them all in), then ``reads`` random feed pages (20 posts) read by ``clients``
  concurrent clients through the Python API (:func:`streams.query.feeds.read_feed`: a pooled
  read side, read-time ranking and the fresh-pool, pulled-creator and takedown caches included),
  against the baseline of the same rows read as one prepared single-partition ``SELECT`` through
  the driver on the same sessions; clients are processes with a read side each (default) or
  threads sharing one (``client_mode``);
* **fan-out**: feed_fanout's engine run (process + encode) for one post by a creator with 1,000,
  10,000 and 100,000 followers, with the default pull threshold and with push forced, and the
  feed ranker's re-rank time per pushed candidate (each push is one re-rank in the follower's
  partition), so the total cost of pushing to every follower is projected;
* **upload-to-feed**: a worker running every agent (all gates, models loaded), a follower of a
  creator, and ``uploads`` text posts published one at a time: the time from the upload's
  publish until the post is in the follower's *materialized* feed, read through the API without
  the fresh pool (polled every 10 ms): the push path, not the read-time pool, which would show
  the post as soon as feed_fanout wrote its ``fresh_posts`` row.
"""
from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from streams.bench import bench_servers
from streams.settings import REPO_ROOT, Settings

Step = Callable[[str], None]


def _pct(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": int(a.size)}


# -- feed reads ---------------------------------------------------------------------------------


CLIENT_MODES = ("processes", "threads")
ROW_FORMATS = ("packed", "collections")


def seed_feeds(session, ks: str, *, users: int, items: int, fresh: int, dim: int = 384,
               seed: int = 7, row_format: str = "packed") -> tuple[list[str], Callable[[], None]]:
    """Write ``users`` feeds of ``items`` posts into ``{ks}.user_feeds`` as feed_ranker writes
    them (signals, a ``dim``-d unit interest vector, hashtag and category affinities) and a fresh
    pool of ``fresh`` posts published after every one of those rankings (each read ranks them
    all in: the worst case), with ids unique to this call. ``row_format``: ``packed`` (the
    ``feed`` blob of :mod:`models.ranking.feed_row`, as feed_ranker writes) or ``collections``
    (the list and map columns rankers wrote before it).

    Returns ``(user_ids, remove)``: ``remove()`` deletes every row written.

    Raises ValueError for an unknown ``row_format``."""
    from cassandra.concurrent import execute_concurrent_with_args

    from models.ranking.feed_row import pack_feed
    from models.ranking.readtime import SIGNAL_NAMES

    run = uuid.uuid4().hex[:8]
    ids = [f"bench-{run}-u{i}" for i in range(users)]
    now = int(time.time() * 1000)
    rng_np = np.random.default_rng(seed)

    def unit(n: int) -> np.ndarray:
        v = rng_np.standard_normal((n, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    posts = [f"bench-p{j}" for j in range(items)]
    creators = [f"bench-c{j % 50}" for j in range(items)]
    published = [now - j * 60_000 for j in range(items)]
    scores = [1.0 - j / items for j in range(items)]
    signals = [[round(float(x), 6) for x in rng_np.random(len(SIGNAL_NAMES))] for _ in range(items)]
    types = ["FOREVER"] * items
    tags = {f"tag{k}": round(float(x), 4) for k, x in enumerate(rng_np.random(64))}
    cats = {f"cat{k}": round(float(x), 4) for k, x in enumerate(rng_np.random(20))}
    vectors = unit(256)
    if row_format == "packed":
        insert = session.prepare(f"INSERT INTO {ks}.user_feeds (user_id, feed, candidate_count, "
                                 f"generated_at, model_version) VALUES (?, ?, ?, ?, ?)")
        packed = [pack_feed(posts, creators, ["INTEREST"] * items, types, published, scores,
                            SIGNAL_NAMES, signals, v, tags, cats) for v in vectors]

        def values(i: int, u: str) -> tuple:
            return (u, packed[i % 256], items, now, "bench")
    elif row_format == "collections":
        insert = session.prepare(f"INSERT INTO {ks}.user_feeds (user_id, items, candidate_count, "
                                 f"generated_at, model_version, signals, content_types, interest_vector, "
                                 f"hashtag_affinity, category_affinity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        feed = [(p, c, sc, "INTEREST", ["interest 0.80", "freshness 0.90", "source interest"], t)
                for p, c, sc, t in zip(posts, creators, scores, published)]

        def values(i: int, u: str) -> tuple:
            return (u, feed, items, now, "bench", signals, types, vectors[i % 256].tolist(), tags, cats)
    else:
        raise ValueError(f"row_format must be one of {', '.join(ROW_FORMATS)}, not {row_format!r}")
    for lo in range(0, users, 1000):
        execute_concurrent_with_args(session, insert, [
            values(i, u) for i, u in enumerate(ids[lo:lo + 1000], start=lo)], concurrency=64)
    fresh_insert = session.prepare(
        f"INSERT INTO {ks}.fresh_posts (bucket, published_at, post_id, creator_id, content_type, "
        f"is_reply, parent_creator_id, hashtags, categories, quality, trust, vector, expires_at) "
        f"VALUES (0, ?, ?, ?, 'FOREVER', ?, NULL, ?, ?, 0.6, 0.9, ?, NULL)")
    fresh_rows = [(now + 1 + j, f"bench-{run}-f{j}", f"bench-c{j % 80}", j % 3 == 0,
                   [f"tag{j % 90}"], {f"cat{j % 25}": 0.8}, v.tolist())
                  for j, v in enumerate(unit(fresh))]
    execute_concurrent_with_args(session, fresh_insert, fresh_rows, concurrency=64)

    def remove() -> None:
        delete = session.prepare(f"DELETE FROM {ks}.user_feeds WHERE user_id = ?")
        execute_concurrent_with_args(session, delete, [(u,) for u in ids], concurrency=64)
        delete = session.prepare(f"DELETE FROM {ks}.fresh_posts WHERE bucket = 0 AND published_at = ? "
                                 f"AND post_id = ?")
        execute_concurrent_with_args(session, delete, [r[:2] for r in fresh_rows], concurrency=64)

    return ids, remove


def bench_feed_reads(settings: Settings, *, users: int = 10_000, items: int = 200, clients: int = 8,
                     reads: int = 8_000, fresh: int | None = None, dim: int = 384,
                     client_mode: str = "processes", row_format: str = "packed",
                     on_step: Step = lambda m: None) -> dict:
    """Feed-read latency through the API and through a raw prepared read (see module).

    ``row_format``: how the feeds are stored (:func:`seed_feeds`): ``packed`` as feed_ranker
    writes them, or ``collections`` as rankers wrote them before; the raw read selects the
    columns the API's read selects.

    ``client_mode``: ``processes`` (default) runs each client in its own process with its own
    read side (driver session, prepared statements, caches), as the API's server processes do;
    ``threads`` runs them as threads sharing one read side in this process, so they also
    share one interpreter lock.

    Raises ValueError for an unknown ``client_mode`` or ``row_format``."""
    if client_mode not in CLIENT_MODES:
        raise ValueError(f"client_mode must be one of {', '.join(CLIENT_MODES)}, not {client_mode!r}")
    if row_format not in ROW_FORMATS:
        raise ValueError(f"row_format must be one of {', '.join(ROW_FORMATS)}, not {row_format!r}")
    from streams.query.feeds import read_feed
    from streams.query.read_side import ReadSide

    fresh = settings.feed_fresh_pool if fresh is None else fresh
    with ReadSide(settings) as rs:
        session = rs.session
        ks = rs.active_keyspace()
        on_step(f"writing {users} feeds of {items} posts and a fresh pool of {fresh} posts")
        ids, remove = seed_feeds(session, ks, users=users, items=items, fresh=fresh, dim=dim,
                                 row_format=row_format)
        raw_cql = (f"SELECT feed, generated_at FROM {ks}.user_feeds WHERE user_id = ?"
                   if row_format == "packed" else
                   f"SELECT items, generated_at, signals, content_types, interest_vector, "
                   f"hashtag_affinity, category_affinity FROM {ks}.user_feeds WHERE user_id = ?")
        raw = session.prepare(raw_cql)
        rng = random.Random(7)
        picks = [rng.choice(ids) for _ in range(reads)]
        chunks = [picks[i::clients] for i in range(clients)]
        warm = [picks[i:200:clients] for i in range(clients)]  # connections, statements, caches
        if client_mode == "threads":
            paths = {"raw": lambda u: session.execute(raw, (u,)).one(), "api": lambda u: read_feed(rs, u, limit=20)}

            def timed(path: str, parts: list[list[str]]) -> list[float]:
                with ThreadPoolExecutor(clients) as pool:
                    return [ms for lat in pool.map(lambda part: _time_reads(paths[path], part), parts)
                            for ms in lat]

            def close() -> None:
                return None
        else:
            on_step(f"starting {clients} client processes")
            timed, close = _client_processes(settings, raw_cql, clients)
        try:
            timed("raw", warm), timed("api", warm)
            on_step(f"{reads} raw reads, {clients} clients ({client_mode})")
            base = timed("raw", chunks)
            on_step(f"{reads} API reads, {clients} clients ({client_mode})")
            api = timed("api", chunks)
            base2 = timed("raw", chunks)  # again: drift on a busy machine
        finally:
            close()
        on_step("removing the bench feeds")
        remove()
    raw_all = base + base2
    out_api, out_raw = _pct(api), _pct(raw_all)
    return {"users": users, "items_per_feed": items, "fresh_pool": fresh, "clients": clients,
            "client_mode": client_mode, "row_format": row_format, "reads": reads, "api": out_api, "raw_driver": out_raw,
            "p99_ratio": round(out_api["p99_ms"] / out_raw["p99_ms"], 3),
            "p50_ratio": round(out_api["p50_ms"] / out_raw["p50_ms"], 3)}


def _time_reads(read: Callable[[str], object], users: list[str]) -> list[float]:
    """Milliseconds of ``read(u)`` for each of ``users``, one after another."""
    out = []
    for u in users:
        t0 = time.perf_counter()
        read(u)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _read_client(conn, settings: Settings, raw_cql: str) -> None:
    """One client process of the read benchmark: its own read side; answers each
    ``(path, users)`` message with the latencies of reading those users' feeds (``path`` "raw":
    ``raw_cql`` prepared; "api": :func:`streams.query.feeds.read_feed`, a page of 20) until sent
    None."""
    from streams.query.feeds import read_feed
    from streams.query.read_side import ReadSide

    with ReadSide(settings) as rs:
        raw = rs.session.prepare(raw_cql)
        paths = {"raw": lambda u: rs.session.execute(raw, (u,)).one(), "api": lambda u: read_feed(rs, u, limit=20)}
        conn.send("ready")
        while (msg := conn.recv()) is not None:
            path, users = msg
            conn.send(_time_reads(paths[path], users))


def _client_processes(settings: Settings, raw_cql: str, clients: int, start_timeout_s: float = 120.0):
    """``clients`` processes running :func:`_read_client` -> ``(timed, close)``: ``timed(path,
    parts)`` sends part ``i`` to client ``i``, all at once, and returns every latency; ``close()``
    stops them."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # the driver's threads do not survive a fork
    conns, procs = [], []
    for _ in range(clients):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_read_client, args=(child, settings, raw_cql), daemon=True)
        proc.start()
        conns.append(parent), procs.append(proc)

    def close() -> None:
        for c in conns:
            try:
                c.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()

    try:
        for c, proc in zip(conns, procs):
            if not c.poll(start_timeout_s) or c.recv() != "ready":
                raise RuntimeError(f"a read-bench client process did not start (exit code {proc.exitcode})")
    except BaseException:
        close()
        raise

    def timed(path: str, parts: list[list[str]]) -> list[float]:
        for c, part in zip(conns, parts):
            c.send((path, part))
        return [ms for c in conns for ms in c.recv()]

    return timed, close


# -- fan-out ------------------------------------------------------------------------------------


def bench_fanout(settings: Settings, followers: tuple[int, ...] = (1_000, 10_000, 100_000),
                 on_step: Step = lambda m: None) -> dict:
    """feed_fanout's cost per post by creator size, hybrid (default threshold) and push-only,
    and the ranker's re-rank time per push (see module)."""
    from agents import feed_fanout, feed_ranker
    from agents.shared.posts import PostVectors, PublishedPosts, Takedowns
    from agents.shared.social import FollowGraph, UserInterests
    from streams.runtime.binding import RuntimeContext
    from streams.runtime.engine import AgentRunner, RawMessage

    rctx = RuntimeContext(settings)
    t0 = 1_700_000_000_000
    out: dict = {"threshold": settings.feed_pull_threshold, "creators": {}}
    for n in followers:
        graph = FollowGraph()
        for i in range(n):
            graph.apply({"event_id": f"f{n}-{i}", "event_time": t0, "follower_id": f"u{i}",
                         "followee_id": f"creator{n}", "action": "FOLLOW"})
        side = {"follows": graph, "interests": UserInterests(), "vectors": PostVectors(),
                "published": PublishedPosts()}
        row = {}
        for label, threshold in (("hybrid", settings.feed_pull_threshold), ("push", 10**9)):
            runner = AgentRunner(feed_fanout.SPEC, rctx.codec, config=settings.with_(feed_pull_threshold=threshold),
                                 side=side)
            post = {"event_id": str(uuid.uuid4()), "event_time": t0 + 1000, "producer": "publisher",
                    "cause_event_id": None, "post_id": f"p{n}", "creator_id": f"creator{n}",
                    "kind": "TEXT", "content_type": "FOREVER", "distribution": "FULL",
                    "uploaded_at": t0 + 1000, "expires_at": None, "hashtags": [], "categories": {},
                    "quality_score": 0.5, "parent_post_id": None, "moderation_event_id": None,
                    "copyright_event_id": None, "enrichment_event_id": None}
            msg = RawMessage("posts-published", 0, 0, None, rctx.codec("posts-published").encode(post))
            on_step(f"fan-out of a post by a creator with {n} followers ({label})")
            began = time.perf_counter()
            result = runner.run([msg])
            row[label] = {"seconds": round(time.perf_counter() - began, 4),
                          "candidates_emitted": len(result.emits),
                          "view_rows": len(result.views)}
        out["creators"][str(n)] = row
    # the ranker's cost per push: one re-rank of a user with a month of posts in the pool
    posts, vectors = PublishedPosts(), PostVectors()
    rng = np.random.default_rng(0)
    for i in range(3000):
        at = t0 - i * 900_000
        posts.apply({"event_id": f"e{i}", "event_time": at, "post_id": f"q{i}", "creator_id": f"c{i % 300}",
                     "kind": "TEXT", "content_type": "FOREVER", "distribution": "FULL", "uploaded_at": at,
                     "expires_at": None, "hashtags": [f"t{i % 40}"], "categories": {"science": 0.5},
                     "quality_score": 0.6, "parent_post_id": None})
        vectors.apply({"event_id": f"v{i}", "event_time": at, "post_id": f"q{i}",
                       "text_embedding": list(rng.standard_normal(384).astype(float)), "image_embedding": None})
    ranker = AgentRunner(feed_ranker.SPEC, rctx.codec, config=settings,
                         side={"published": posts, "vectors": vectors, "takedowns": Takedowns()})
    profile = {"event_id": str(uuid.uuid4()), "event_time": t0, "producer": "user_profiler",
               "cause_event_id": None, "model": "m", "model_version": "1", "user_id": "reader",
               "sequence": 1, "interest_vector": list(rng.standard_normal(384).astype(float)),
               "category_affinities": {"science": 0.5}, "active_hours": [], "notification_tolerance": 1.0,
               "interaction_count": 1, "cold_start": False}
    ranker.run([RawMessage("profiles", 0, 0, None, rctx.codec("profiles").encode(profile))])
    times = []
    for i in range(50):
        cand = {"event_id": str(uuid.uuid4()), "event_time": t0 + i, "producer": "feed_fanout",
                "cause_event_id": None, "model": "m", "model_version": "1", "user_id": "reader",
                "post_id": f"q{i}", "creator_id": f"c{i % 300}", "source": "IN_NETWORK", "similarity": None,
                "published_at": t0 - i * 900_000}
        msg = RawMessage("feed-candidates", 0, i + 1, None, rctx.codec("feed-candidates").encode(cand))
        began = time.perf_counter()
        ranker.apply_state(ranker.run([msg]).state)
        times.append((time.perf_counter() - began) * 1000)
    rerank = statistics.median(times)
    out["rerank_per_push_ms"] = round(rerank, 3)
    out["pool_posts"] = len(posts)
    for n, row in out["creators"].items():
        for label in ("hybrid", "push"):
            row[label]["projected_rerank_s"] = round(row[label]["candidates_emitted"] * rerank / 1000, 2)
    return out


# -- upload to feed -----------------------------------------------------------------------------


def bench_upload_to_feed(settings: Settings, *, uploads: int = 30, timeout_s: float = 600.0,
                         on_step: Step = lambda m: None) -> dict:
    """Upload-to-feed latency with every agent and gate in one worker (see module)."""
    from streams.producer import Publisher
    from streams.query.feeds import read_feed
    from streams.query.read_side import ReadSide

    run = uuid.uuid4().hex[:8]
    creator, fan = f"bench-{run}-creator", f"bench-{run}-fan"
    log = settings.home / "logs" / f"bench-feeds-worker-{run}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PULSE_HOME=str(settings.home), PULSE_APP_ID=f"bench-{run}",
               PULSE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap or "",
               PULSE_CASSANDRA_HOSTS=",".join(settings.cassandra_hosts))
    with open(log, "ab") as fh:
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], stdout=fh,
                                  stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, start_new_session=True)
    latencies: list[float] = []
    seen_at: dict[str, float] = {}     # post -> wall-clock ms its follower's feed showed it
    try:
        now = int(time.time() * 1000)
        with Publisher(settings, producer_name="bench") as pub, ReadSide(settings) as rs:
            pub.publish("follows", {"event_id": str(uuid.uuid4()), "event_time": now, "producer": "bench",
                                    "follower_id": fan, "followee_id": creator, "action": "FOLLOW"})
            pub.flush()
            on_step("waiting for the worker (models load first)")
            _wait(lambda: rs.execute("SELECT user_id FROM {ks}.user_feeds WHERE user_id = ?", (fan,)).one(),
                  timeout_s, worker, log)
            for i in range(uploads):
                post = f"bench-{run}-p{i}"
                on_step(f"upload {i + 1}/{uploads}")
                pub.publish("uploads", {
                    "event_id": str(uuid.uuid4()), "event_time": int(time.time() * 1000),
                    "producer": "bench", "post_id": post, "creator_id": creator, "kind": "TEXT",
                    "content_type": "FOREVER", "media_uri": None,
                    "caption": f"measuring how fast post {i} reaches a follower's feed",
                    "title": None, "hashtags": ["benchmark"], "duration_ms": None,
                    "size_bytes": None, "width": None, "height": None, "parent_post_id": None})
                pub.flush()
                began = time.perf_counter()
                _wait(lambda: any(it.post_id == post for it in read_feed(rs, fan, limit=50, fresh=0).items),
                      60.0, worker, log, interval_s=0.01)
                latencies.append((time.perf_counter() - began) * 1000)
                seen_at[post] = time.time() * 1000
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    return {"uploads": uploads, "gates": list(settings.gates), **_pct(latencies),
            "hops": hop_breakdown(settings, seen_at)}


#: The topics an upload crosses on its way to a follower's feed, in order.
UPLOAD_PATH = ("uploads", "moderation-verdicts", "copyright-verdicts", "content-enriched",
               "posts-published", "feed-candidates")


def hop_breakdown(settings: Settings, seen_at: dict[str, float]) -> dict[str, dict[str, float]]:
    """Where the upload-to-feed time goes: for each topic of :data:`UPLOAD_PATH` (and the feed
    read), p50/p99 over the posts of ``seen_at`` of the time from the upload's Kafka timestamp
    (the producer's create time, ms) to the post's first record on that topic. Reads each topic
    whole with a group-less consumer (the bench's servers hold only its own events)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from streams.contracts.codec import codec_for
    from streams.contracts.topics import topic_spec

    first: dict[str, dict[str, float]] = {}
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"bench-hops-{uuid.uuid4()}",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        for topic in UPLOAD_PATH:
            codec = codec_for(settings, topic_spec(topic).schema, topic)
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            left, got = sum(ends.values()), first.setdefault(topic, {})
            while left > 0:
                msgs = consumer.consume(500, 5.0)
                if not msgs:
                    break
                for m in msgs:
                    left -= 1
                    if m.error() is not None or m.value() is None:
                        continue
                    post = codec.decode(m.value()).get("post_id")
                    if post in seen_at:
                        got[post] = min(got.get(post, float("inf")), float(m.timestamp()[1]))
    finally:
        consumer.close()
    start = first.get("uploads", {})
    out: dict[str, dict[str, float]] = {}
    for topic in UPLOAD_PATH[1:]:
        ms = [first[topic][p] - start[p] for p in seen_at if p in start and p in first.get(topic, {})]
        if ms:
            out[topic] = _pct(ms)
    feed = [seen_at[p] - start[p] for p in seen_at if p in start]
    if feed:
        out["feed (read)"] = _pct(feed)
    return out


def _wait(pred, timeout_s: float, worker: subprocess.Popen, log: Path, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if worker.poll() is not None:
            raise RuntimeError(f"the bench worker exited ({worker.returncode}); see {log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing after {timeout_s:.0f} s; see {log}")
        time.sleep(interval_s)


def run_feeds_bench(*, users: int = 10_000, reads: int = 8_000, clients: int = 8, uploads: int = 30,
                    client_mode: str = "processes", row_format: str = "packed",
                    settings: Settings | None = None,
                    on_step: Step = lambda m: None) -> dict:
    """All three measurements, on servers of its own unless ``settings`` is given; one dict."""
    from streams.servers.provision import provision

    def run(s: Settings) -> dict:
        provision(s)
        reads_out = bench_feed_reads(s, users=users, reads=reads, clients=clients, client_mode=client_mode,
                                     row_format=row_format, on_step=on_step)
        fan = bench_fanout(s, on_step=on_step)
        u2f = bench_upload_to_feed(s, uploads=uploads, on_step=on_step)
        return {"feed_reads": reads_out, "fanout": fan, "upload_to_feed": u2f,
                "goals": {"read_p99_under_10ms": reads_out["api"]["p99_ms"] < 10.0,
                          "read_p99_within_1_5x_raw": reads_out["p99_ratio"] <= 1.5,
                          "upload_to_feed_p99_under_2s": u2f["p99_ms"] < 2000.0}}

    if settings is not None:
        return run(settings)
    with bench_servers("pulse-bench-feeds-", on_step, PULSE_APP_ID="bench-feeds") as (s, _home, _up):
        return run(s)
