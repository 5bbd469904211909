"""`pulse bench replay`: export to Parquet and view rebuild over a history of a million events,
each beside a plain confluent-kafka read of the same topics from the same run.

The history is a Stack Exchange dump as Pulse events (``signups``, ``uploads``,
``interactions``, ``follows``; the CLI loads it with :mod:`streams.demo.sources.stackexchange`,
which this package may not import) replicated into independent copies (:func:`replica`) until
it holds the events asked for, and published with :class:`~streams.producer.Publisher` (timed,
not the measured figure). Then, over the same topics:

- baseline: a plain confluent-kafka consumer reads every message of each topic, no decoding;
- export: :func:`replay.export.export_topics` of the topics together to Parquet (decode,
  Arrow, zstd), in one process (``export_one_process``) and with the default processes
  (``export``: one per CPU, at most one per partition and per 100,000 messages, claiming the
  partitions of every topic); the read and both exports twice
  each, the faster run of each reported (:func:`measure`);
- rebuild: :func:`replay.rebuild.rebuild_views` of the materializer (its source topics
  ``uploads``, ``signups``, ``follows``; Cassandra writes included).

The benchmark starts its own servers in a temporary PULSE_HOME and stops them at the end.
"""
from __future__ import annotations

import itertools
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator

from streams.bench.ranking import TOPIC_OF
from streams.bench import bench_servers
from streams.settings import Settings

Step = Callable[[str], None]
Progress = Callable[[str, int, int], None]
"""``on_progress(task, done, total)``; ``task`` is ``"publish"``, ``"export <topic>"`` or
``"rebuild"``."""

TOPICS = ("signups", "uploads", "interactions", "follows")
"""The topics the history is published to (and exported and read back)."""

ID_FIELDS = {
    "signups": ("user_id",),
    "uploads": ("post_id", "creator_id", "parent_post_id"),
    "interactions": ("user_id", "post_id", "comment_id"),
    "follows": ("follower_id", "followee_id"),
}
"""Per topic, the fields holding a user, post or comment id that a copy renames
(``event_id`` is replaced separately); the unit tests check this against the Avro schemas."""

GOALS = {"export_per_s": 50_000, "export_ratio": 0.5, "rebuild_materializer_per_s": 20_000}
"""The goals of issue 12 ("Measured")."""


def replica_id(value: str, copy: int) -> str:
    """The id ``value`` (a user, post or comment id) has in copy ``copy``: unchanged in copy 0,
    else ``"r<copy>-<value>"``. Injective over ``(copy, value)`` as long as no original id
    starts with ``r<digits>-`` (Stack Exchange ids start with ``se-``)."""
    return value if copy == 0 else f"r{copy}-{value}"


def replica(topic: str, record: dict, copy: int) -> dict:
    """Copy ``copy`` of ``record`` (a ``topic`` event): copy 0 is the record itself; any other
    copy gets a fresh ``event_id`` (UUID 5 named ``str(copy)`` in the original event id as
    namespace: deterministic, RFC 9562) and every id of :data:`ID_FIELDS` renamed by
    :func:`replica_id`, so each copy is a self-contained population of users, posts and
    comments that refer only to each other. ``event_time`` is kept: the copies are a site with
    ``copies`` times the users, active at the same moments.

    Raises
    ------
    KeyError
        ``topic`` is not one of :data:`TOPICS`.
    """
    fields = ID_FIELDS[topic]
    if copy == 0:
        return record
    out = dict(record)
    out["event_id"] = str(uuid.uuid5(uuid.UUID(record["event_id"]), str(copy)))
    for name in fields:
        value = out.get(name)
        if value is not None:
            out[name] = replica_id(value, copy)
    return out


def scaled_history(history: list[tuple[str, dict]], events: int) -> Iterator[tuple[str, dict]]:
    """``(topic, record)`` of ``history`` (``(event_type, record)`` in time order, as
    :func:`streams.demo.sources.stackexchange.iter_events_in_time_order` yields) replicated
    into ``ceil(events / len(history))`` copies, exactly ``events`` of them: each original
    event followed by its copies 1, 2, ..., so the stream stays in event-time order and every
    copy's events keep their referential order (a user signs up before posting). A cut in
    the last round leaves the last copies a few events short at the end of the history."""
    if not history:
        return
    copies = -(-events // len(history))
    n = 0
    for event_type, record in history:
        topic = TOPIC_OF[event_type]
        for copy in range(copies):
            if n >= events:
                return
            yield topic, replica(topic, record, copy)
            n += 1


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def publish_history(settings: Settings, records: Iterable[tuple[str, dict]], total: int,
                    on_progress: Progress = lambda *_: None) -> dict:
    """Validate, encode and publish ``records`` with the project's Publisher until acknowledged.
    Returns ``events``, ``seconds``, ``events_per_s`` and ``by_topic`` (events per topic)."""
    from streams.producer import Publisher

    by_topic = dict.fromkeys(TOPICS, 0)
    began = time.perf_counter()
    with Publisher(settings, producer_name="bench-replay") as pub:
        n = 0
        for chunk in _chunks(records, 1_000):
            # the chunk's new subjects' keys made together, as a batching producer does
            pub.prepare_events(chunk)
            for topic, record in chunk:
                pub.publish(topic, record)
                by_topic[topic] += 1
            n += len(chunk)
            if n % 5_000 == 0:
                on_progress("publish", n, total)
    seconds = time.perf_counter() - began
    n = sum(by_topic.values())
    on_progress("publish", n, n)
    return {"events": n, "by_topic": by_topic, "seconds": round(seconds, 2),
            "events_per_s": round(n / seconds) if seconds else 0}


def plain_read(settings: Settings, topics: Iterable[str], timeout_s: float = 30.0) -> dict:
    """The baseline: a plain confluent-kafka consumer (no group commits, no decoding) reads every
    message of each topic from its low to its high watermark. Returns ``events``, ``bytes``
    (values), ``seconds``, ``events_per_s`` and ``by_topic``.

    Raises
    ------
    RuntimeError
        A fetch error, or nothing arrives for ``timeout_s`` seconds.
    """
    from confluent_kafka import Consumer, TopicPartition

    out = {"events": 0, "bytes": 0, "seconds": 0.0, "by_topic": {}}
    for topic in topics:
        c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "enable.auto.commit": False,
                      "group.id": f"bench-plain-{uuid.uuid4()}"})
        try:
            parts = c.list_topics(topic, timeout=timeout_s).topics[topic].partitions
            ends, assign = {}, []
            for p in sorted(parts):
                low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                if low < high:
                    ends[p] = high
                    assign.append(TopicPartition(topic, p, low))
            n = size = 0
            began = time.perf_counter()
            c.assign(assign)
            last = time.monotonic()
            while ends:
                # consume() waits up to its timeout for num_messages: a short one, so the
                # last batch of each topic does not add a second
                batch = c.consume(num_messages=1_000, timeout=0.05)
                if not batch and time.monotonic() - last > timeout_s:
                    raise RuntimeError(f"plain read of {topic} stalled at {n} messages")
                for m in batch:
                    if m.error() is not None:
                        raise RuntimeError(f"plain read of {topic}: {m.error()}")
                    n += 1
                    size += len(m.value())
                    if m.offset() + 1 >= ends.get(m.partition(), 1 << 62):
                        del ends[m.partition()]
                if batch:
                    last = time.monotonic()
            seconds = time.perf_counter() - began
        finally:
            c.close()
        out["by_topic"][topic] = n
        out["events"] += n
        out["bytes"] += size
        out["seconds"] += seconds
    out["seconds"] = round(out["seconds"], 3)
    out["events_per_s"] = round(out["events"] / out["seconds"]) if out["seconds"] else 0
    return out


def export_all(settings: Settings, topics: Iterable[str], out_dir: Path,
               on_progress: Progress = lambda *_: None, jobs: int | None = None) -> dict:
    """``pulse export TOPIC... --out-dir DIR [--jobs N]``: the topics exported together into
    ``out_dir/<topic>.parquet`` through :func:`replay.export.export_topics`, with the progress
    totals the command shows (:func:`replay.reader.message_counts`). Returns ``events`` (rows),
    ``bytes`` (files), ``seconds``, ``events_per_s``, ``by_topic`` (rows), ``jobs`` (processes
    that read), ``keys_scanned`` and ``progress_end`` (the last ``[done, total]`` each bar was given)."""
    from replay.export import export_topics
    from replay.reader import message_counts

    topics = list(topics)
    counts = {topic: message_counts(settings, topic) for topic in topics}
    totals = {topic: sum(counts[topic].values()) for topic in topics}
    last = {topic: [0, totals[topic]] for topic in topics}

    def progress(topic: str, n: int) -> None:
        last[topic][0] = n
        on_progress(f"export {topic}", n, totals[topic])

    results = export_topics(settings, {t: Path(out_dir) / f"{t}.parquet" for t in topics},
                            on_progress=progress, jobs=jobs, counts=counts)
    seconds = results[0]["seconds"] if results else 0.0
    events = sum(r["rows"] for r in results)
    return {"events": events, "bytes": sum(r["bytes"] for r in results), "seconds": seconds,
            "events_per_s": round(events / seconds) if seconds else 0,
            "by_topic": {r["topic"]: r["rows"] for r in results},
            "jobs": results[0]["jobs"] if results else 1,
            "keys_scanned": bool(results and results[0]["keys_scanned"]), "progress_end": last}


def rebuild_materializer(settings: Settings, into: str | None = None,
                         on_progress: Progress = lambda *_: None) -> dict:
    """``pulse replay rebuild --agents materializer [--into KEYSPACE]``: its views rebuilt from
    ``uploads``, ``signups`` and ``follows``. Returns ``events``, ``effects`` (rows written),
    ``seconds``, ``events_per_s``, ``by_topic``, ``keyspace`` and ``progress_end``."""
    from replay.rebuild import rebuild_views

    last = [0, 0]

    def progress(done: int, total: int) -> None:
        last[:] = [done, total]
        on_progress("rebuild", done, total)

    r = rebuild_views(settings, ["materializer"], into=into, on_progress=progress)
    return {"events": r["events"], "effects": r["effects"], "seconds": r["seconds"],
            "events_per_s": r["events_per_s"], "by_topic": r["topics"], "keyspace": r["keyspace"],
            "dead_letters": r["dead_letters"], "progress_end": last}


def best_of(runs: list[dict]) -> dict:
    """The run with the most ``events_per_s`` of ``runs`` (results of one figure measured more
    than once), with ``runs_seconds``: every run's ``seconds``, in order. Only runs that agree
    on ``by_topic`` are compared; a disagreement is kept visible as ``by_topic_runs``."""
    best = dict(max(runs, key=lambda r: r["events_per_s"]))
    best["runs_seconds"] = [r["seconds"] for r in runs]
    if any(r["by_topic"] != best["by_topic"] for r in runs):
        best["by_topic_runs"] = [r["by_topic"] for r in runs]
    return best


def measure(settings: Settings, out_dir: Path, *, into: str | None = None,
            on_step: Step = lambda m: None, on_progress: Progress = lambda *_: None) -> dict:
    """The three measured figures over the topics as they are now, and their ratios and goals.

    The plain read and both exports run twice, in the order plain, one process, default,
    default, one process, plain (ABBA: a drift of the machine, such as Cassandra compacting
    after the publish, weighs on each the same), and each figure is the faster of its two
    runs (:func:`best_of`; both runs' seconds are kept in ``runs_seconds``)."""
    from agents.materializer import SPEC

    on_step("plain read (baseline)")
    plain_runs = [plain_read(settings, TOPICS)]
    on_step("export to Parquet, one process")
    one_runs = [export_all(settings, TOPICS, out_dir, on_progress, jobs=1)]
    on_step("export to Parquet (the default: processes side by side)")
    default_runs = [export_all(settings, TOPICS, out_dir, on_progress)]
    on_step("export to Parquet (the default), again")
    default_runs.append(export_all(settings, TOPICS, out_dir, on_progress))
    on_step("export to Parquet, one process, again")
    one_runs.append(export_all(settings, TOPICS, out_dir, on_progress, jobs=1))
    on_step("plain read (baseline), again")
    plain_runs.append(plain_read(settings, TOPICS))
    plain, export_one, export = best_of(plain_runs), best_of(one_runs), best_of(default_runs)
    plain_mat = {t: plain["by_topic"][t] for t in SPEC.topics}
    on_step("rebuild of the materializer's views")
    rebuild = rebuild_materializer(settings, into, on_progress)
    export_ratio = export["events_per_s"] / plain["events_per_s"] if plain["events_per_s"] else 0.0
    return {
        "plain_read": plain, "export": export, "export_one_process": export_one,
        "rebuild_materializer": rebuild,
        "export_ratio": round(export_ratio, 3),
        "export_one_process_ratio": round(export_one["events_per_s"] / plain["events_per_s"], 3)
        if plain["events_per_s"] else 0.0,
        "rebuild_ratio": round(rebuild["events_per_s"] / plain["events_per_s"], 4)
        if plain["events_per_s"] else 0.0,
        "counts_agree": all(r["by_topic"] == plain["by_topic"]
                            for r in plain_runs + one_runs + default_runs)
        and rebuild["by_topic"] == plain_mat,
        "goals": {**GOALS,
                  "export_per_s_met": export["events_per_s"] >= GOALS["export_per_s"],
                  "export_ratio_met": export_ratio >= GOALS["export_ratio"],
                  "rebuild_materializer_per_s_met":
                      rebuild["events_per_s"] >= GOALS["rebuild_materializer_per_s"]},
    }


def run_on(settings: Settings, history: list[tuple[str, dict]], events: int, work_dir: Path, *,
           into: str | None = None, on_step: Step = lambda m: None,
           on_progress: Progress = lambda *_: None) -> dict:
    """Publish ``history`` scaled to ``events`` (:func:`scaled_history`) to the servers of
    ``settings`` (topics and views provisioned), then :func:`measure` with the Parquet files in
    ``work_dir``: ``history``, ``publish`` and the keys of :func:`measure`."""
    out_dir = Path(work_dir) / "export"
    out_dir.mkdir(exist_ok=True)
    result: dict = {"history": {"events": len(history),
                                "copies": -(-events // len(history)) if history else 0,
                                "scaled_events": events}}
    on_step("publishing the scaled history")
    result["publish"] = publish_history(settings, scaled_history(history, events), events,
                                        on_progress)
    result.update(measure(settings, out_dir, into=into, on_step=on_step, on_progress=on_progress))
    return result


def run_replay_bench(history: list[tuple[str, dict]], events: int = 1_000_000, dataset: str = "",
                     on_step: Step = lambda m: None, on_progress: Progress = lambda *_: None) -> dict:
    """Start servers in a temporary PULSE_HOME, provision them, :func:`run_on` (the rebuild
    writes the materializer's views in place: nothing else wrote them), stop the servers."""
    from streams.servers.provision import provision

    result: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    with bench_servers("pulse-bench-replay-", on_step) as (settings, home, up_seconds):
        result["up_seconds"] = round(up_seconds, 1)
        on_step("provisioning topics and views")
        provision(settings)
        result.update(run_on(settings, history, events, home, on_step=on_step, on_progress=on_progress))
        result["history"]["dataset"] = dataset
    return result
