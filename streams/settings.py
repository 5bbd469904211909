"""One frozen settings object for every Pulse process, built at the entry point.

Every setting comes from an environment variable ``PULSE_*``; connection settings that ``pulse up``
discovers (the free ports it chose) are read from the state file ``$PULSE_HOME/servers.json``
when the matching variable is unset. Setting ``PULSE_KAFKA_BOOTSTRAP``, ``PULSE_CASSANDRA_HOSTS``
or ``PULSE_QDRANT_URL`` points Pulse at external servers; ``pulse up`` then starts nothing for them.

The table in docs/settings.md lists the same variables; keep them in step.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout Pulse runs from: ``schemas/``, ``infra/`` live here."""


class SettingsError(ValueError):
    """A ``PULSE_*`` variable holds a value Pulse cannot use; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None


def _urls(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated ``http``/``https`` URLs with a host; raises :class:`SettingsError`
    naming the first that is not one."""
    from urllib.parse import urlsplit

    urls = tuple(u.strip() for u in (env.get(name) or "").split(",") if u.strip())
    for u in urls:
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"{name}: {u!r} is not an http(s) URL with a host "
                                f"(e.g. http://10.0.0.7:9464/metrics)")
    return urls


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    """A non-negative integer (``0`` usually meaning off)."""
    value = _int(env, name, default)
    if value < 0:
        raise SettingsError(f"{name}={value} is negative; use 0 to turn it off")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    """An on/off setting: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``
    (case-insensitive; unset or empty: ``default``)."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={env[name]!r}: use 1/true/on or 0/false/off")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def _positive(env: Mapping[str, str], name: str, default: float, integer: bool = False) -> float:
    """A number (an integer when ``integer``) above zero."""
    value = _int(env, name, int(default)) if integer else _float(env, name, default)
    if not value > 0:
        raise SettingsError(f"{name}={value} must be above zero")
    return value


#: Settings Pulse no longer reads, and why: setting one is an error, not silently ignored.
REMOVED = {
    "PULSE_NOTIFICATION_MC_DRAWS": "notification_generator computes Thompson sampling's "
                                   "probabilities exactly since model version 3 (docs/notifications.md)",
}


def _optional(env: Mapping[str, str], name: str, kind: type, lo: float, hi: float | None = None):
    """``None`` when unset (the consumer's own default), else a ``kind`` number in ``[lo, hi]``."""
    if env.get(name) in (None, ""):
        return None
    value = _int(env, name, 0) if kind is int else _float(env, name, 0.0)
    if value < lo or (hi is not None and value > hi):
        raise SettingsError(f"{name}={value} is outside [{lo}, {hi if hi is not None else 'no limit'}]")
    return value


def _paths(env: Mapping[str, str], name: str) -> tuple[Path, ...]:
    """Absolute directories separated by ``os.pathsep`` (empty entries ignored)."""
    out = []
    for part in (env.get(name) or "").split(os.pathsep):
        if not part.strip():
            continue
        p = Path(part.strip()).expanduser()
        if not p.is_absolute():
            raise SettingsError(f"{name}: {part!r} is not an absolute path")
        out.append(p.resolve())
    return tuple(dict.fromkeys(out))


#: What the publisher can wait for (``PULSE_GATES``): Content Guard's and Copyright Guard's
#: verdicts, and CLIP AI's enrichment (not a decision: the post is published with its categories,
#: quality and search vectors in place).
GATES = ("moderation", "copyright", "enrichment")


def _gates(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return GATES
    names = tuple(dict.fromkeys(g.strip().lower() for g in raw.split(",") if g.strip()))
    if names in ((), ("none",)):
        return ()
    unknown = [g for g in names if g not in GATES]
    if unknown:
        raise SettingsError(f"PULSE_GATES={raw!r}: unknown gate {unknown[0]!r}; "
                            f"use a comma-separated subset of {', '.join(GATES)} (or 'none')")
    return names


#: Consistency levels ``PULSE_CASSANDRA_CONSISTENCY`` accepts (cassandra-driver's ``ConsistencyLevel`` names
#: that make sense for every request; SERIAL levels are for lightweight transactions only).
CONSISTENCY_LEVELS = ("ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
                      "LOCAL_ONE")


def _consistency(env: Mapping[str, str], replication: int) -> str:
    raw = (env.get("PULSE_CASSANDRA_CONSISTENCY") or "").strip().upper()
    if not raw:
        return "QUORUM" if replication >= 3 else "LOCAL_ONE"
    if raw not in CONSISTENCY_LEVELS:
        raise SettingsError(f"PULSE_CASSANDRA_CONSISTENCY={raw!r}: use one of {', '.join(CONSISTENCY_LEVELS)}")
    return raw


def _cluster_size(env: Mapping[str, str], name: str, state: dict, server: str) -> int:
    """Nodes of an embedded cluster: the variable, else the count the state file records, else 1."""
    entry = state.get(server) or state.get("stopped", {}).get(server) or {}
    recorded = len(entry.get("nodes") or ()) or 1
    value = _int(env, name, recorded)
    if value < 1:
        raise SettingsError(f"{name}={value} must be 1 or more")
    return value


@dataclass(frozen=True)
class Settings:
    """Pulse configuration. Build it with :meth:`from_env`; pass it down, never re-read the env.

    Attributes
    ----------
    home:
        ``PULSE_HOME`` (default ``~/.pulse``): server data, logs, PID files, the state file and
        the embedded Qdrant directory. Data here survives ``pulse down`` / ``pulse up``.
    cache_dir:
        ``PULSE_CACHE`` (default ``~/.cache/pulse``): the JVM servers' jars resolved from Maven
        Central, shared by every ``PULSE_HOME`` on the machine.
    kafka_bootstrap:
        ``PULSE_KAFKA_BOOTSTRAP``: ``host:port[,host:port]`` of an external Kafka cluster; when
        unset, the embedded broker's address from the state file (``None`` before ``pulse up``).
    cassandra_hosts:
        ``PULSE_CASSANDRA_HOSTS``: comma-separated ``host[:port]`` contact points of an external
        Cassandra cluster; when unset, the embedded node from the state file.
    cassandra_keyspace:
        ``PULSE_CASSANDRA_KEYSPACE`` (default ``pulse``).
    cassandra_replication:
        ``PULSE_CASSANDRA_REPLICATION`` (default ``min(3, cassandra_nodes)``: 1 for one node, 3
        for the three-node ring of ``pulse up --cassandra-nodes 3``): SimpleStrategy replication
        factor used when Pulse creates the keyspace (an existing keyspace keeps its own).
    cassandra_consistency:
        ``PULSE_CASSANDRA_CONSISTENCY`` (default ``QUORUM`` when ``cassandra_replication`` is 3
        or more, else ``LOCAL_ONE``, the driver's own default): the consistency level of every
        read and write Pulse sends (sinks, replay, the read side). QUORUM of 3 replicas
        tolerates one node down with every read seeing every acknowledged write.
    cassandra_nodes:
        ``PULSE_CASSANDRA_NODES`` (default: as many as the state file records, else ``1``):
        nodes of the embedded Cassandra ring ``pulse up`` starts, on 127.0.0.1, 127.0.0.2, ...
        (``pulse up --cassandra-nodes N``; docs/clusters.md).
    kafka_brokers:
        ``PULSE_KAFKA_BROKERS`` (default: as many as the state file records, else ``1``): brokers
        of the embedded KRaft cluster ``pulse up`` starts (``pulse up --brokers N``).
    kafka_replication:
        ``PULSE_KAFKA_REPLICATION`` (default ``0`` = ``min(3, brokers the cluster reports)``):
        replication factor of the topics Pulse creates (catalog topics and changelogs); their
        ``min.insync.replicas`` is 2 from 3 replicas up, else 1
        (:func:`streams.contracts.topics.replication_for`).
    cassandra_protocol_version:
        ``PULSE_CASSANDRA_PROTOCOL`` (default ``5``; use 4 for Cassandra 3.x/4.x clusters).
    view_pointer_ttl_s:
        ``PULSE_VIEW_POINTER_TTL_S`` (default ``2``): seconds a reader trusts the active-keyspace
        pointer (``view_pointer`` in the base keyspace) before reading it again, so a
        ``pulse replay swap`` reaches every reader on every machine within this long, without a
        restart; ``0`` reads the pointer before every query.
    qdrant_url:
        ``PULSE_QDRANT_URL``: URL of a Qdrant server; when unset, the embedded qdrant-edge
        engine stores vectors under ``$PULSE_HOME/qdrant``.
    vector_index_build_points:
        ``PULSE_VECTOR_INDEX_BUILD_POINTS`` (default ``10000``): the embedded qdrant-edge engine
        builds a collection's HNSW index in a background process (then swaps it in) each time
        this many points were upserted into it since its last build (and, when a worker opens
        it, as soon as this many of its points are not indexed); ``0`` turns background builds
        off, leaving an exact scan until ``optimize()``
        (:mod:`streams.stores.vectors.edge_build`). Ignored with ``PULSE_QDRANT_URL``.
    schema_registry_url:
        ``PULSE_SCHEMA_REGISTRY_URL``: when set, events use the Confluent wire format with schema
        ids from that registry instead of Avro single-object encoding.
    app_id:
        ``PULSE_APP_ID`` (default ``pulse``): the Faust application id, i.e. the consumer-group
        prefix and the changelog-topic prefix.
    topic_partitions:
        ``PULSE_PARTITIONS`` (default ``0`` = as each topic in ``infra/kafka/topics.toml`` says):
        overrides every topic's partition count when topics are created.
    web_port:
        ``PULSE_WEB_PORT`` (default ``0`` = off): port of a worker's Faust web server (its
        ``/stats`` and agent views); one worker per port.
    metrics_port:
        ``PULSE_METRICS_PORT`` (default ``0`` = an ephemeral port): where a worker serves its
        Prometheus ``/metrics`` (on ``127.0.0.1``; its address is written under
        ``$PULSE_HOME/run/metrics/`` for ``pulse dashboard``); ``-1`` turns it off.
    metrics_host:
        ``PULSE_METRICS_HOST`` (default ``127.0.0.1``): the address a worker's metrics server
        binds (``0.0.0.0`` for a Prometheus on another host).
    metrics_targets:
        ``PULSE_METRICS_TARGETS`` (default none): comma-separated ``/metrics`` URLs of workers on
        other hosts (``http://10.0.0.7:9464/metrics``) that the dashboard scrapes beside the
        local workers it finds under ``$PULSE_HOME/run/metrics/``; only ``http``/``https`` URLs.
    session_timeout_s:
        ``PULSE_SESSION_TIMEOUT_S`` (default ``10``): Kafka consumer session timeout; a killed
        worker's partitions move to the surviving workers after at most this long.
    commit_stall_s:
        ``PULSE_COMMIT_STALL_S`` (default ``30``): seconds a partition's delivered and
        acknowledged events may stay uncommitted before the worker's commit watchdog logs it and
        rewinds the partition to its committed offset (``streams.runtime.transport``).
    kafka_heap / cassandra_heap:
        ``PULSE_KAFKA_HEAP`` (default ``512m``) and ``PULSE_CASSANDRA_HEAP`` (default ``1g``):
        JVM heap of the embedded servers.
    startup_timeout_s:
        ``PULSE_STARTUP_TIMEOUT_S`` (default ``180``): how long ``pulse up`` waits for a server.
    gates:
        ``PULSE_GATES`` (default ``moderation,copyright,enrichment``): what the publisher waits
        for before it emits ``posts-published``; a comma-separated subset of ``moderation``
        (Content Guard's verdict), ``copyright`` (Copyright Guard's verdict) and ``enrichment``
        (CLIP AI's ``content-enriched``, so the post goes out with its categories and quality and
        its search vectors exist). ``none`` publishes every upload at once.
    moderation_model:
        ``PULSE_MODERATION_MODEL``: the Content Guard model version (a directory name under
        ``models/moderation/artifacts``) or a path to a model directory; unset = the shipped one.
    clip_category_head:
        ``PULSE_CLIP_CATEGORY_HEAD``: a trained category head for clip_ai (``pulse train clip``):
        a version name under ``models/clip/artifacts`` or a path to its directory; unset =
        zero-shot categories from the taxonomy. The head's version joins clip_ai's ``model_version``.
    media_max_bytes:
        ``PULSE_MEDIA_MAX_BYTES`` (default 150 MB = ``157286400``): larger media get a verdict
        saying so instead of being decoded, and ``POST /v1/media`` refuses them (413).
    media_root:
        ``PULSE_MEDIA_ROOT`` (default ``$PULSE_HOME/media``): the media store. ``POST /v1/media``
        writes uploads' media here (content-addressed) and returns ``media:`` URIs relative to
        it; workers read media only from here and from ``media_read_roots``
        (:mod:`streams.contracts.media`).
    media_read_roots:
        ``PULSE_MEDIA_READ_ROOTS`` (default none): further directories, separated by ``os.pathsep``
        (``:``), that media may be read from (read-only volumes, the demo's photos and clips). A
        ``media_uri`` outside the store and these roots gets a verdict saying so.
    api_host / api_port:
        ``PULSE_API_HOST`` (default ``127.0.0.1``: loopback only) and ``PULSE_API_PORT`` (default
        ``8080``): where ``pulse api`` listens (its ``--host`` / ``--port`` override them).
    api_cors_origins:
        ``PULSE_API_CORS_ORIGINS`` (default none: CORS off): comma-separated origins browsers may
        call the API from (``https://app.example.com``).
    api_max_body_bytes:
        ``PULSE_API_MAX_BODY_BYTES`` (default ``1048576``): largest event body ``POST
        /v1/events/{topic}`` accepts (413 above); media bodies are limited by
        ``PULSE_MEDIA_MAX_BYTES``.
    api_threads:
        ``PULSE_API_THREADS`` (default ``4``): worker threads per API process for the
        synchronous endpoints (the reads: a Cassandra round trip and read-time ranking, CPU-bound
        under one interpreter lock, so a few threads overlap one read's I/O with another's work
        and more only contend: 32 connections on 2 cores, 2026-12-06, gave p99 up to 4 s with
        anyio's default of 40 and 0.2 s with 4). Scale with ``pulse api --workers N`` instead.
    api_key_rate / api_key_burst:
        ``PULSE_API_KEY_RATE`` (default ``200`` requests/s) and ``PULSE_API_KEY_BURST`` (``400``):
        each API key's token bucket, per API process (429 with ``Retry-After`` when empty).
    api_user_rate / api_user_burst:
        ``PULSE_API_USER_RATE`` (default ``20`` requests/s) and ``PULSE_API_USER_BURST`` (``40``):
        each user token's bucket, per API process.
    api_token_ttl_s:
        ``PULSE_API_TOKEN_TTL_S`` (default ``3600``): lifetime of the user tokens ``pulse token``
        signs when ``--ttl`` is not given, seconds.
    api_session_ttl_s:
        ``PULSE_API_SESSION_TTL_S`` (default ``28800``, 8 h): lifetime of a moderator's or
        operator's browser session (``POST /v1/session``: the ``pulse_session`` cookie), seconds.
    personal_data_encryption:
        ``PULSE_PERSONAL_DATA_ENCRYPTION`` (default ``1``; ``0`` / ``false`` / ``off`` turn it
        off): personal fields (those marked ``"pulse.personal"`` in ``schemas/avro``) are
        encrypted per data subject by the producer, the HTTP API and the runtime's emits, and
        decrypted for agents, replay, export and training sets; erasure deletes the subject's key
        (crypto-shredding, docs/erasure.md). Off: they travel and are read as they are.
    subject_key_cache_s:
        ``PULSE_SUBJECT_KEY_CACHE_S`` (default ``60``): how long a process keeps a subject's key
        in memory before reading it again; after an erasure, other running processes may still
        decrypt the subject's fields for up to this long.
    crash_point:
        ``PULSE_CRASH_POINT`` (default unset): fault injection for the crash-safety tests,
        ``<agent>:<point>[:<n>]`` kills the worker the n-th time a batch of that agent reaches
        the point (``streams.runtime.faults``). Never set it in production.
    profile_half_life_days:
        ``PULSE_PROFILE_HALF_LIFE_DAYS`` (default ``14``): half-life of an engagement's weight in
        a profile's interest vector and affinities.
    profile_activity_half_life_days:
        ``PULSE_PROFILE_ACTIVITY_HALF_LIFE_DAYS`` (default ``90``, above zero): half-life of an
        event's weight in a profile's active-hours histogram (the hours of the week the user is
        active, read by timing_optimizer and notification_generator). Longer than the interests'
        because habits of the clock change more slowly than tastes and each event is one of 168
        cells: at 14 days a user who acts a few times a month has a handful of events per
        histogram (docs/timing.md).
    feed_size:
        ``PULSE_FEED_SIZE`` (default ``200``): posts kept in each user's materialized feed.
    feed_horizon_days:
        ``PULSE_FEED_HORIZON_DAYS`` (default ``30``): oldest post (by publish time) a feed
        considers; a post also leaves feeds when it expires (Flash, Memory).
    feed_pull_threshold:
        ``PULSE_FEED_PULL_THRESHOLD`` (default ``10000``): a creator with at least this many
        followers when a post is published is *pulled* at read time instead of pushed to each
        follower (hybrid push/pull).
    feed_interest_push:
        ``PULSE_FEED_INTEREST_PUSH`` (default ``100``): a published post is also pushed to the
        users (at most this many) whose interest vectors are nearest to it; ``0`` turns it off.
    feed_interest_min_similarity:
        ``PULSE_FEED_INTEREST_MIN_SIMILARITY`` (default ``0.0``): the cosine similarity below
        which an interest push is not made.
    feed_active_days:
        ``PULSE_FEED_ACTIVE_DAYS`` (default ``7``): interest pushes go only to users with an event
        in this many days before the post (``0``: to every user).
    collaborative_model:
        ``PULSE_COLLABORATIVE_MODEL``: the item-kNN model feed_ranker loads for its collaborative
        candidate source (:mod:`models.ranking.collaborative`): a version name under
        ``PULSE_HOME/models/collaborative`` or a path to its directory (``pulse train
        collaborative`` writes one; ``pulse models list`` lists them); unset = no collaborative
        source.
    feed_fresh_pool:
        ``PULSE_FEED_FRESH_POOL`` (default ``500``): read-time ranking
        (:mod:`models.ranking.readtime`) adds to each feed read the posts published since the
        feed was ranked, from the newest this many published FULL posts (``fresh_posts``, cached
        per reading process for a second); ``0`` turns the fresh pool off (stored items are
        still re-scored for the reading time).
    trend_slot_s, trend_window_slots, trend_half_life_h, trend_bias, trend_z_start, trend_z_end, trend_min_count:
        ``PULSE_TREND_SLOT_S`` (default ``300``), ``PULSE_TREND_WINDOW_SLOTS`` (``12``),
        ``PULSE_TREND_HALF_LIFE_H`` (``24``), ``PULSE_TREND_BIAS`` (``3``),
        ``PULSE_TREND_Z_START`` (``3``), ``PULSE_TREND_Z_END`` (``1``),
        ``PULSE_TREND_MIN_COUNT`` (``5``): trend_detector's counting slot (seconds), slots per
        window, baseline half-life (hours), SigniTrend bias (mentions), burst scores at which a
        trend starts and ends, and mentions a trend needs to start
        (:class:`models.trends.burst.TrendParams`, docs/trends.md).
    notification_daily_budget, notification_quiet_share, notification_digest_interval_h, notification_digest_max_items, notification_send_cost, notification_hold_cost, notification_exploration:
        ``PULSE_NOTIFICATION_DAILY_BUDGET``, ``..._QUIET_SHARE``, ``..._DIGEST_INTERVAL_H``,
        ``..._DIGEST_MAX_ITEMS``, ``..._SEND_COST``, ``..._HOLD_COST``,
        ``..._EXPLORATION``: notification_generator's policy
        (:class:`models.notifications.policy.PolicyParams`, docs/notifications.md); unset (None)
        = the policy's default.
    timing_prior_strength, timing_smoothing, timing_audience_days:
        ``PULSE_TIMING_PRIOR_STRENGTH``, ``PULSE_TIMING_SMOOTHING``, ``PULSE_TIMING_AUDIENCE_DAYS``:
        timing_optimizer's population-prior strength, day x hour smoothing and engager memory
        (days) (docs/timing.md); unset (None) = the agent's default.
    analytics_lg_k, analytics_horizon_h, analytics_maturity_h:
        ``PULSE_ANALYTICS_LG_K`` (4-21; agent default ``12``), ``PULSE_ANALYTICS_HORIZON_H``
        (default ``24``), ``PULSE_ANALYTICS_MATURITY_H`` (default ``168``): creator analytics'
        HyperLogLog size (log2 of its registers: about ``1.04 / sqrt(2**lg_k)`` relative error),
        the early horizon whose signals predict a post's virality, and the age at which a post's
        engagement is final and the regressor learns it (hours; docs/analytics.md); unset (None)
        = the agent's default.
    """

    home: Path
    cache_dir: Path
    kafka_bootstrap: str | None = None
    cassandra_hosts: tuple[str, ...] = ()
    cassandra_keyspace: str = "pulse"
    cassandra_replication: int = 1
    cassandra_consistency: str = "LOCAL_ONE"
    cassandra_nodes: int = 1
    kafka_brokers: int = 1
    kafka_replication: int = 0
    cassandra_protocol_version: int = 5
    view_pointer_ttl_s: float = 2.0
    qdrant_url: str | None = None
    vector_index_build_points: int = 10_000
    schema_registry_url: str | None = None
    app_id: str = "pulse"
    topic_partitions: int = 0
    web_port: int = 0
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    metrics_targets: tuple[str, ...] = ()
    session_timeout_s: float = 10.0
    commit_stall_s: float = 30.0
    kafka_heap: str = "512m"
    cassandra_heap: str = "1g"
    startup_timeout_s: float = 180.0
    clip_model: str = "ViT-B-32"
    clip_checkpoint: str | None = None
    clip_model_config: str | None = None
    clip_category_head: str | None = None
    clip_keyframes: int = 4
    gates: tuple[str, ...] = GATES
    moderation_model: str | None = None
    media_max_bytes: int = 150 * 1024 * 1024
    media_root: Path | None = None
    media_read_roots: tuple[Path, ...] = ()
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_cors_origins: tuple[str, ...] = ()
    api_max_body_bytes: int = 1024 * 1024
    api_threads: int = 4
    api_key_rate: float = 200.0
    api_key_burst: int = 400
    api_user_rate: float = 20.0
    api_user_burst: int = 40
    api_token_ttl_s: int = 3600
    api_session_ttl_s: int = 8 * 3600
    crash_point: str = ""
    personal_data_encryption: bool = True
    subject_key_cache_s: float = 60.0
    profile_half_life_days: float = 14.0
    profile_activity_half_life_days: float = 90.0
    feed_size: int = 200
    feed_horizon_days: float = 30.0
    feed_pull_threshold: int = 10_000
    feed_interest_push: int = 100
    feed_interest_min_similarity: float = 0.0
    feed_active_days: float = 7.0
    feed_fresh_pool: int = 500
    collaborative_model: str | None = None
    trend_slot_s: float = 300.0
    trend_window_slots: int = 12
    trend_half_life_h: float = 24.0
    trend_bias: float = 3.0
    trend_z_start: float = 3.0
    trend_z_end: float = 1.0
    trend_min_count: int = 5
    notification_daily_budget: int | None = None
    notification_quiet_share: float | None = None
    notification_digest_interval_h: float | None = None
    notification_digest_max_items: int | None = None
    notification_send_cost: float | None = None
    notification_hold_cost: float | None = None
    notification_exploration: float | None = None
    timing_prior_strength: float | None = None
    timing_smoothing: float | None = None
    timing_audience_days: float | None = None
    analytics_lg_k: int | None = None
    analytics_horizon_h: float | None = None
    analytics_maturity_h: float | None = None
    external: frozenset[str] = field(default_factory=frozenset)
    """Which of ``kafka``, ``cassandra``, ``qdrant`` were named by the environment (not started by Pulse)."""

    @property
    def state_file(self) -> Path:
        """``$PULSE_HOME/servers.json``: what ``pulse up`` started, where, with which PIDs."""
        return self.home / "servers.json"

    @property
    def qdrant_path(self) -> Path:
        """Directory of the embedded qdrant-edge shards."""
        return self.home / "qdrant"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``env`` (default ``os.environ``) and the state file.

        Raises
        ------
        SettingsError
            A variable holds a value of the wrong type, or is one Pulse no longer reads
            (:data:`REMOVED`).
        """
        env = os.environ if env is None else env
        for name, why in REMOVED.items():
            if env.get(name) not in (None, ""):
                raise SettingsError(f"{name} is no longer read: {why}; unset it")
        home = Path(env.get("PULSE_HOME") or Path.home() / ".pulse").expanduser().resolve()
        cache = Path(env.get("PULSE_CACHE") or Path.home() / ".cache" / "pulse").expanduser().resolve()
        state = read_state(home / "servers.json")
        external = {name for name, var in (("kafka", "PULSE_KAFKA_BOOTSTRAP"),
                                          ("cassandra", "PULSE_CASSANDRA_HOSTS"),
                                          ("qdrant", "PULSE_QDRANT_URL")) if env.get(var)}
        kafka = env.get("PULSE_KAFKA_BOOTSTRAP") or state.get("kafka", {}).get("bootstrap")
        hosts_raw = env.get("PULSE_CASSANDRA_HOSTS") or ",".join(state.get("cassandra", {}).get("hosts", []))
        hosts = tuple(h.strip() for h in hosts_raw.split(",") if h.strip())
        nodes = _cluster_size(env, "PULSE_CASSANDRA_NODES", state, "cassandra")
        replication = _int(env, "PULSE_CASSANDRA_REPLICATION", min(3, nodes))
        return cls(
            home=home,
            cache_dir=cache,
            kafka_bootstrap=kafka or None,
            cassandra_hosts=hosts,
            cassandra_keyspace=env.get("PULSE_CASSANDRA_KEYSPACE") or "pulse",
            cassandra_replication=replication,
            cassandra_consistency=_consistency(env, replication),
            cassandra_nodes=nodes,
            kafka_brokers=_cluster_size(env, "PULSE_KAFKA_BROKERS", state, "kafka"),
            kafka_replication=_count(env, "PULSE_KAFKA_REPLICATION", 0),
            cassandra_protocol_version=_int(env, "PULSE_CASSANDRA_PROTOCOL", 5),
            view_pointer_ttl_s=_float(env, "PULSE_VIEW_POINTER_TTL_S", 2.0),
            qdrant_url=env.get("PULSE_QDRANT_URL") or None,
            vector_index_build_points=_count(env, "PULSE_VECTOR_INDEX_BUILD_POINTS", 10_000),
            schema_registry_url=env.get("PULSE_SCHEMA_REGISTRY_URL") or None,
            app_id=env.get("PULSE_APP_ID") or "pulse",
            topic_partitions=_int(env, "PULSE_PARTITIONS", 0),
            web_port=_int(env, "PULSE_WEB_PORT", 0),
            metrics_port=_int(env, "PULSE_METRICS_PORT", 0),
            metrics_host=env.get("PULSE_METRICS_HOST") or "127.0.0.1",
            metrics_targets=_urls(env, "PULSE_METRICS_TARGETS"),
            session_timeout_s=_float(env, "PULSE_SESSION_TIMEOUT_S", 10.0),
            commit_stall_s=_positive(env, "PULSE_COMMIT_STALL_S", 30.0),
            kafka_heap=env.get("PULSE_KAFKA_HEAP") or "512m",
            cassandra_heap=env.get("PULSE_CASSANDRA_HEAP") or "1g",
            startup_timeout_s=_float(env, "PULSE_STARTUP_TIMEOUT_S", 180.0),
            clip_model=env.get("PULSE_CLIP_MODEL") or "ViT-B-32",
            clip_checkpoint=env.get("PULSE_CLIP_CHECKPOINT") or None,
            clip_model_config=env.get("PULSE_CLIP_MODEL_CONFIG") or None,
            clip_category_head=env.get("PULSE_CLIP_CATEGORY_HEAD") or None,
            clip_keyframes=_int(env, "PULSE_CLIP_KEYFRAMES", 4),
            gates=_gates(env.get("PULSE_GATES")),
            moderation_model=env.get("PULSE_MODERATION_MODEL") or None,
            media_max_bytes=_int(env, "PULSE_MEDIA_MAX_BYTES", 150 * 1024 * 1024),
            media_root=Path(env.get("PULSE_MEDIA_ROOT") or home / "media").expanduser().resolve(),
            media_read_roots=_paths(env, "PULSE_MEDIA_READ_ROOTS"),
            api_host=env.get("PULSE_API_HOST") or "127.0.0.1",
            api_port=_int(env, "PULSE_API_PORT", 8080),
            api_cors_origins=tuple(o.strip() for o in (env.get("PULSE_API_CORS_ORIGINS") or "").split(",")
                                   if o.strip()),
            api_max_body_bytes=int(_positive(env, "PULSE_API_MAX_BODY_BYTES", 1024 * 1024, integer=True)),
            api_threads=int(_positive(env, "PULSE_API_THREADS", 4, integer=True)),
            api_key_rate=_positive(env, "PULSE_API_KEY_RATE", 200.0),
            api_key_burst=int(_positive(env, "PULSE_API_KEY_BURST", 400, integer=True)),
            api_user_rate=_positive(env, "PULSE_API_USER_RATE", 20.0),
            api_user_burst=int(_positive(env, "PULSE_API_USER_BURST", 40, integer=True)),
            api_token_ttl_s=int(_positive(env, "PULSE_API_TOKEN_TTL_S", 3600, integer=True)),
            api_session_ttl_s=int(_positive(env, "PULSE_API_SESSION_TTL_S", 8 * 3600, integer=True)),
            crash_point=env.get("PULSE_CRASH_POINT") or "",
            personal_data_encryption=_switch(env, "PULSE_PERSONAL_DATA_ENCRYPTION", True),
            subject_key_cache_s=_positive(env, "PULSE_SUBJECT_KEY_CACHE_S", 60.0),
            profile_half_life_days=_float(env, "PULSE_PROFILE_HALF_LIFE_DAYS", 14.0),
            profile_activity_half_life_days=_positive(env, "PULSE_PROFILE_ACTIVITY_HALF_LIFE_DAYS", 90.0),
            feed_size=_int(env, "PULSE_FEED_SIZE", 200),
            feed_horizon_days=_float(env, "PULSE_FEED_HORIZON_DAYS", 30.0),
            feed_pull_threshold=_int(env, "PULSE_FEED_PULL_THRESHOLD", 10_000),
            feed_interest_push=_int(env, "PULSE_FEED_INTEREST_PUSH", 100),
            feed_interest_min_similarity=_float(env, "PULSE_FEED_INTEREST_MIN_SIMILARITY", 0.0),
            feed_active_days=_float(env, "PULSE_FEED_ACTIVE_DAYS", 7.0),
            feed_fresh_pool=_int(env, "PULSE_FEED_FRESH_POOL", 500),
            collaborative_model=env.get("PULSE_COLLABORATIVE_MODEL") or None,
            trend_slot_s=_positive(env, "PULSE_TREND_SLOT_S", 300.0),
            trend_window_slots=int(_positive(env, "PULSE_TREND_WINDOW_SLOTS", 12, integer=True)),
            trend_half_life_h=_positive(env, "PULSE_TREND_HALF_LIFE_H", 24.0),
            trend_bias=_float(env, "PULSE_TREND_BIAS", 3.0),
            trend_z_start=_float(env, "PULSE_TREND_Z_START", 3.0),
            trend_z_end=_float(env, "PULSE_TREND_Z_END", 1.0),
            trend_min_count=_count(env, "PULSE_TREND_MIN_COUNT", 5),
            notification_daily_budget=_optional(env, "PULSE_NOTIFICATION_DAILY_BUDGET", int, 0),
            notification_quiet_share=_optional(env, "PULSE_NOTIFICATION_QUIET_SHARE", float, 0.0, 1.0),
            notification_digest_interval_h=_optional(env, "PULSE_NOTIFICATION_DIGEST_INTERVAL_H", float, 0.0),
            notification_digest_max_items=_optional(env, "PULSE_NOTIFICATION_DIGEST_MAX_ITEMS", int, 1),
            notification_send_cost=_optional(env, "PULSE_NOTIFICATION_SEND_COST", float, 0.0),
            notification_hold_cost=_optional(env, "PULSE_NOTIFICATION_HOLD_COST", float, 0.0),
            notification_exploration=_optional(env, "PULSE_NOTIFICATION_EXPLORATION", float, 0.0, 1.0),
            timing_prior_strength=_optional(env, "PULSE_TIMING_PRIOR_STRENGTH", float, 0.0),
            timing_smoothing=_optional(env, "PULSE_TIMING_SMOOTHING", float, 0.0, 1.0),
            timing_audience_days=_optional(env, "PULSE_TIMING_AUDIENCE_DAYS", float, 0.0),
            analytics_lg_k=_optional(env, "PULSE_ANALYTICS_LG_K", int, 4, 21),
            analytics_horizon_h=_optional(env, "PULSE_ANALYTICS_HORIZON_H", float, 0.01),
            analytics_maturity_h=_optional(env, "PULSE_ANALYTICS_MATURITY_H", float, 0.01),
            external=frozenset(external),
        )

    def with_(self, **changes) -> "Settings":
        """A copy with some fields changed (settings stay frozen)."""
        return replace(self, **changes)


def read_state(path: Path) -> dict:
    """The state file's JSON object, or ``{}`` when there is none (or it is unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def cassandra_contact_points(hosts: tuple[str, ...]) -> tuple[list[str], int]:
    """Split ``("127.0.0.1:9042", ...)`` into driver contact points and one native port.

    The Python driver takes a single port for all contact points; the first explicit port wins
    and ``9042`` is the default.
    """
    points, port = [], None
    for h in hosts:
        host, _, p = h.rpartition(":") if ":" in h else (h, "", "")
        points.append(host or h)
        if p and port is None:
            port = int(p)
    return points, port or 9042
