"""`pulse demo`: the main job on embedded defaults, end to end, on real input.

1. bring the servers up (or use the configured external ones), create topics and views;
2. start a `pulse worker` process running every registered agent;
3. publish the works rights holders register (``streams.demo.gates``), then a real platform's
   history (a Stack Exchange dump: sign-ups, posts, comments, favourites and derived follows, in
   time order with their real timestamps; by default the quantumcomputing dump shipped in
   ``streams/demo/data/``, :data:`~streams.demo.sources.stackexchange.SAMPLE_DUMP`), real media
   (scikit-image's sample photos, and the video clips of ``--media``) and a disguised copy of a
   registered photo as events, their media first copied into the media store as an app does
   through ``POST /v1/media`` (workers read media only from the media roots);
4. wait until the worker's consumer group has committed every published offset;
5. stop the worker and print a summary per topic and per view, what the gates decided and what
   CLIP AI found, with searches over the demo's posts (``streams.demo.clip``); the servers keep
   running, so the views can be queried: `pulse posts`, `pulse review list`; `pulse down` stops
   them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agents.registry import AGENTS

from streams.settings import Settings
from streams.contracts.topics import require_bootstrap
from streams.demo.sources.stackexchange import SAMPLE_DUMP

#: Source record kind (streams.demo.sources) -> topic.
KIND_TOPIC = {"user_signup": "signups", "upload": "uploads", "interaction": "interactions",
              "follow": "follows"}


class DemoError(RuntimeError):
    """The demo could not finish (worker died, input missing, timeout); the message says why."""


@dataclass
class DemoResult:
    """What the demo published and what the views hold afterwards."""

    published: Counter = field(default_factory=Counter)
    skipped: dict[str, int] = field(default_factory=dict)
    adjusted: dict[str, int] = field(default_factory=dict)
    end_offsets: dict[str, int] = field(default_factory=dict)
    views: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    gates: dict = field(default_factory=dict)
    """What the gates decided (``streams.demo.gates.gate_summary``)."""
    clip: dict = field(default_factory=dict)
    """What CLIP AI found, and the demo's searches (``streams.demo.clip.clip_summary``)."""
    feeds: dict = field(default_factory=dict)
    """A few users' feeds and profiles (``streams.demo.feeds.feed_summary``)."""
    delivery: dict = field(default_factory=dict)
    """Notification decisions, golden moments, trends (``streams.demo.delivery.delivery_summary``)."""


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def media_epoch_ms(media: Path | None, photos: bool) -> int:
    """The time the demo's media uploads are stamped with: the newest modification time of the
    media sources (scikit-image's data directory, ``--media``), in epoch ms.

    A fixed, input-derived time (not "now") makes a re-run publish identical events, so the
    idempotent views do not change; e.g. ``posts_by_creator``, clustered by upload time, would
    otherwise gain a second row per post.
    """
    import skimage

    dirs = ([Path(skimage.data_dir)] if photos else []) + ([Path(media)] if media is not None else [])
    return int(max((d.stat().st_mtime for d in dirs), default=0) * 1000)


def collect_events(stackexchange: Path | None, media: Path | None, photos: bool,
                   now_ms: int) -> tuple[list[tuple[str, dict]], dict[str, int], dict[str, int]]:
    """Every demo event as ``(topic, record)`` in publishing order, plus counts of skipped
    records and of records whose time was adjusted to keep references in order, by reason."""
    from streams.demo.sources import media as media_src

    events: list[tuple[str, dict]] = []
    skipped: dict[str, int] = {}
    adjusted: dict[str, int] = {}
    if stackexchange is not None:
        from streams.demo.sources import stackexchange as se

        dump = se.load_dump(stackexchange)
        events.extend((KIND_TOPIC[kind], rec) for kind, rec in se.iter_events_in_time_order(dump))
        skipped.update({f"stackexchange: {k}": v for k, v in dump.skipped.items()})
        adjusted.update({f"stackexchange: {k}": v for k, v in dump.adjusted.items()})
    if photos or media is not None:  # the demo creators who post the media sign up first
        events.extend(("signups", rec) for rec in media_src.demo_creator_signups(now_ms))
    if photos:
        events.extend(("uploads", rec) for rec in media_src.scikit_image_uploads(now_ms))
    if media is not None:
        uploads, media_skipped = media_src.media_dir_uploads(media, now_ms)
        events.extend(("uploads", rec) for rec in uploads)
        skipped.update({f"media: {k}": v for k, v in media_skipped.items()})
    return events, skipped, adjusted


def store_upload_media(settings: Settings, events: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """``events`` with every upload's local media copied into the media store
    (``PULSE_MEDIA_ROOT``, :class:`~streams.stores.media.MediaStore`) and its ``media_uri`` the
    store's ``media:`` URI, as an app does through ``POST /v1/media``: workers read media only
    from the media roots, and a content-addressed URI makes a re-run publish identical events."""
    from streams.contracts.media import MediaRoots
    from streams.stores.media import MediaStore

    store = MediaStore.from_settings(settings)
    anywhere = MediaRoots(None, (Path("/"),))  # the demo's own inputs, read here, not by workers
    out = []
    for topic, record in events:
        uri = record.get("media_uri") if topic == "uploads" else None
        if uri and not uri.startswith("media:"):
            record = dict(record, media_uri=store.put_file(anywhere.resolve(uri)).uri)
        out.append((topic, record))
    return out


def start_worker(settings: Settings, log_path: Path, agents: str | None = None) -> subprocess.Popen:
    """Start `pulse worker` as a child process logging to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "streams.cli", "worker"] + (["--agents", agents] if agents else [])
    env = dict(os.environ, PULSE_HOME=str(settings.home), PULSE_APP_ID=settings.app_id,
               PULSE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap or "",
               PULSE_CASSANDRA_HOSTS=",".join(settings.cassandra_hosts))
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=Path(__file__).resolve().parents[2], start_new_session=True)


def stop_worker(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM the worker and wait; SIGKILL it if it does not stop within ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' when absent)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def group_lag(settings: Settings, group: str, topics: list[str]) -> tuple[int, int]:
    """``(committed, end)``: summed committed offsets of consumer group ``group`` and summed end
    offsets over every partition of ``topics``."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    c = Consumer({"bootstrap.servers": require_bootstrap(settings), "group.id": group,
                  "enable.auto.commit": False})
    try:
        md = c.list_topics(timeout=10).topics
        tps = [TopicPartition(t, p) for t in topics for p in md[t].partitions]
        # committed offsets first, end offsets after: an agent commits only after flushing what
        # it emitted, so "committed >= end" then also covers the events its commits caused
        for attempt in range(120):  # the group coordinator may still be loading (NOT_COORDINATOR)
            try:
                committed = sum(max(tp.offset, 0) for tp in c.committed(tps, timeout=10))
                break
            except KafkaException:
                if attempt == 119:
                    raise
                time.sleep(0.5)
        end = sum(c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps)
        return committed, end
    finally:
        c.close()


def wait_caught_up(settings: Settings, topics: list[str], worker: subprocess.Popen, log_path: Path,
                   timeout_s: float, on_progress: Callable[[int, int], None]) -> None:
    """Block until the worker's group committed every end offset of ``topics``.

    Raises
    ------
    DemoError
        The worker exited, or ``timeout_s`` seconds passed (with the worker log's tail).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if worker.poll() is not None:
            raise DemoError(f"the worker exited with code {worker.returncode}; "
                            f"its log ({log_path}) ends:\n{log_tail(log_path)}")
        committed, end = group_lag(settings, settings.app_id, topics)
        on_progress(committed, end)
        if committed >= end:
            return
        if time.monotonic() > deadline:
            raise DemoError(f"the worker processed {committed} of {end} events in {timeout_s:.0f} s; "
                            f"its log ({log_path}) ends:\n{log_tail(log_path)}")
        time.sleep(1.0)


#: The demo publishes its history in three phases and waits for every agent to catch up after
#: each: content (registered works, then uploads, through the gates to publication), people
#: (sign-ups, follows), engagement (interactions). On a running platform people engage with a
#: post after it is published; a history replayed in minutes would otherwise race ahead of the
#: gates, and the profiler and feed agents would see interactions on posts not yet published
#: (their side inputs answer as of each event's time from what has arrived: see
#: ``AgentSpec.order_sensitive``).
PHASES = (("content", ("copyright-references", "uploads")),
          ("people", ("signups", "follows")),
          ("engagement", ("interactions",)))


def run_demo(settings: Settings, *, stackexchange: Path | None = SAMPLE_DUMP,
             media: Path | None = None, photos: bool = True, timeout_s: float = 900.0,
             console: Console | None = None) -> DemoResult:
    """Run the whole demo (see the module docstring); returns its :class:`DemoResult`.

    ``stackexchange``: a Stack Exchange dump directory (default: the shipped sample,
    :data:`SAMPLE_DUMP`; None publishes no platform history). ``media``: a directory of video
    clips and images (default: none).

    Raises
    ------
    DemoError, ServerError, TopicError, ViewStoreError, PublishError
        With a message saying what failed.
    """
    from streams.servers.provision import provision
    from streams.producer import Publisher
    from streams.servers.supervisor import up
    from streams.servers.topics_admin import list_topics
    from streams.query.views import table_counts

    console = console or Console(stderr=True)
    result = DemoResult()
    for label, path in (("--stackexchange", stackexchange), ("--media", media)):
        if path is not None and not Path(path).is_dir():
            raise DemoError(f"{label} {path}: no such directory")
    t0 = time.monotonic()
    with console.status("starting servers") as st:
        up(settings, on_step=lambda m: st.update(m))
    fresh = Settings.from_env({**os.environ, "PULSE_HOME": str(settings.home)})  # addresses from `up`
    settings = settings.with_(kafka_bootstrap=settings.kafka_bootstrap or fresh.kafka_bootstrap,
                              cassandra_hosts=settings.cassandra_hosts or fresh.cassandra_hosts)
    provision(settings)
    result.seconds["servers_ready"] = round(time.monotonic() - t0, 1)

    t0 = time.monotonic()
    with console.status("reading input"):
        events, result.skipped, result.adjusted = collect_events(stackexchange, media, photos,
                                                                 media_epoch_ms(media, photos))
    with console.status("fingerprinting the works rights holders register"):
        from streams.demo.gates import gate_events

        references, copies = gate_events(settings, photos=photos, media=media,
                                         now_ms=media_epoch_ms(media, photos))
        events = [("copyright-references", r) for r in references] + events + \
            [("uploads", u) for u in copies]
    with console.status("storing the uploads' media in the media store"):
        events = store_upload_media(settings, events)
    result.seconds["read_input"] = round(time.monotonic() - t0, 1)

    log_path = settings.home / "logs" / "demo-worker.log"
    worker = start_worker(settings, log_path)
    try:
        consumed = sorted({t for spec in AGENTS.values() for t in spec.topics})
        unphased = {t for t, _ in events} - {t for _, ts in PHASES for t in ts}
        if unphased:
            raise DemoError(f"demo events of topics {sorted(unphased)} belong to no phase (PHASES)")
        for phase, topics in PHASES:
            batch = [(t, r) for t, r in events if t in topics]
            t0 = time.monotonic()
            with Publisher(settings, producer_name="pulse-demo") as pub, _progress(console) as bar:
                task = bar.add_task(f"publishing {phase}", total=len(batch))
                for i, (topic, record) in enumerate(batch, 1):
                    if i % 500 == 1:  # the next 500 events' new subjects' keys made together
                        pub.prepare_events(batch[i - 1:i + 499])
                    pub.publish(topic, record)
                    result.published[topic] += 1
                    if topic == "copyright-references" and (i == len(batch) or batch[i][0] != topic):
                        pub.flush()  # registered works are on the topic before any upload
                    if i % 500 == 0:
                        bar.update(task, completed=i)
                bar.update(task, completed=len(batch))
            result.seconds[f"publish_{phase}"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            with _progress(console) as bar:
                task = bar.add_task(f"agents processing {phase}", total=None)
                wait_caught_up(settings, consumed, worker, log_path, timeout_s,
                               lambda done, end: bar.update(task, completed=done, total=end))
            result.seconds[f"process_{phase}"] = round(time.monotonic() - t0, 1)
    finally:
        stop_worker(worker)

    result.end_offsets = {i.name: i.messages for i in list_topics(settings) if i.in_catalog}
    result.dead_letters = result.end_offsets.get("dead-letters", 0)
    result.views = table_counts(settings, ("users", "posts", "posts_by_creator", "following", "followers"))
    from streams.demo.gates import gate_summary

    demo_posts = {r["post_id"] for t, r in events if t in ("uploads", "interactions")}
    result.gates = gate_summary(settings, demo_posts)
    from streams.demo.clip import clip_summary

    result.clip = clip_summary(settings, demo_posts)
    from streams.demo.feeds import feed_summary, pick_users

    result.feeds = feed_summary(settings, pick_users(events))
    from streams.demo.delivery import delivery_summary

    result.delivery = delivery_summary(settings, events)
    return result


def print_summary(result: DemoResult, console: Console) -> None:
    """The demo's closing tables: per topic, per view, and what was skipped."""
    t = Table(title="topics")
    for col in ("topic", "published now", "end offsets (all runs)"):
        t.add_column(col)
    for topic, end in result.end_offsets.items():
        if end or result.published.get(topic):
            t.add_row(topic, str(result.published.get(topic, 0)), str(end))
    console.print(t)
    v = Table(title="views (Cassandra rows)")
    v.add_column("view")
    v.add_column("rows")
    for name, n in result.views.items():
        v.add_row(name, str(n))
    console.print(v)
    for reason, n in result.skipped.items():
        console.print(f"skipped {n}: {reason}")
    for reason, n in result.adjusted.items():
        console.print(f"time adjusted {n}: {reason}")
    if result.gates:
        from streams.demo.gates import print_gate_summary

        print_gate_summary(result.gates, console)
    if result.clip:
        from streams.demo.clip import print_clip_summary

        print_clip_summary(result.clip, console)
    if result.feeds:
        from streams.demo.feeds import print_feed_summary

        print_feed_summary(result.feeds, console)
    if result.delivery:
        from streams.demo.delivery import print_delivery_summary

        print_delivery_summary(result.delivery, console)
    console.print(f"dead letters on the topic: {result.dead_letters}")
    console.print("timings (s): " + ", ".join(f"{k} {v}" for k, v in result.seconds.items()))
