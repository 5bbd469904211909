"""The Faust application factory (no module-level app: build one per process from settings)."""
from __future__ import annotations

from typing import Sequence

from streams.contracts.agent import AgentSpec

from streams.runtime.binding import RuntimeContext, bind
from streams.settings import Settings
from streams.contracts.topics import require_bootstrap


def faust_broker_urls(bootstrap: str) -> list[str]:
    """``"h1:9092,h2:9092"`` -> ``["kafka://h1:9092", "kafka://h2:9092"]``."""
    return [f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip()]


def create_app(settings: Settings, agents: Sequence[AgentSpec], *, app_id: str | None = None):
    """A Faust app running ``agents``; returns ``(app, RuntimeContext)``.

    All agents of one app share one consumer group (``app_id``, default ``settings.app_id``), so
    workers started with the same agents split the partitions between them. Tables use the memory
    store with changelog topics; source topics are never declared by Faust (``pulse topics
    create`` made them with the catalog's partition counts). Every event type is registered as a
    Faust codec named ``pulse.<snake_name>`` (e.g. ``pulse.upload``); Pulse's own agents read raw
    bytes and decode themselves, so that an undecodable message becomes a dead letter.

    Raises
    ------
    TopicError
        No Kafka cluster is configured.
    """
    from streams.contracts.codec import register_faust_codecs
    from streams.runtime.transport import pulse_app_class

    register_faust_codecs()  # `pulse.<event>` codecs, for agents that want typed Faust topics
    datadir = settings.home / "faust" / (app_id or settings.app_id)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, str] = {}
    for spec in agents:
        extra.update(spec.topic_schemas)
    app = pulse_app_class()(
        app_id or settings.app_id,
        broker=faust_broker_urls(require_bootstrap(settings)),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        web_enabled=settings.web_port > 0,
        web_port=max(settings.web_port, 1),
        web_host="127.0.0.1",
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 4),
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        producer_linger_ms=5,
        producer_max_batch_size=1 << 20,
        consumer_max_fetch_size=4 << 20,
        stream_buffer_maxsize=16384,
        datadir=str(datadir),
    )
    from streams.stores.keys import subject_keys

    app.pulse_commit_stall_s = settings.commit_stall_s  # read by PulseConsumer's watchdog
    ctx = RuntimeContext(settings, extra, keys=subject_keys(settings))
    for spec in agents:
        bind(app, ctx, spec)

    @app.on_before_shutdown.connect
    async def _close_sinks(app_, **kwargs):  # noqa: ARG001
        ctx.close()

    return app, ctx


def create_changelog_topics(app, ctx, timeout_s: float = 30.0) -> list[str]:
    """Create the changelog topics of every table the app's agents keep, before the worker
    starts, and wait until the cluster's metadata lists each with its partitions; returns the
    names created (those that existed are left as they are).

    Faust declares them itself when the worker starts, but then the consumer may see a brand-new
    changelog with 0 partitions for a moment: Faust's first table write raised
    ``PartitionsMismatch`` on that (the feed integration test's agent crashed), and the group
    rebalanced again once the topics appeared. Created first, they are there from the start.
    Compacted, replicated like the catalog's topics (:func:`~streams.contracts.topics.replication_for`
    the brokers the cluster reports: 3 replicas, ``min.insync.replicas`` 2 on three brokers).

    Raises
    ------
    TopicError
        The cluster refuses a topic, or does not list them within ``timeout_s`` seconds.
    """
    import time

    from confluent_kafka.admin import AdminClient, NewTopic

    from streams.contracts.topics import TopicError, replication_for

    wanted = {t.changelog_topic.get_topic_name(): int(t.partitions)
              for per_agent in ctx.tables.values() for t in per_agent.values()}
    if not wanted:
        return []
    admin = AdminClient({"bootstrap.servers": require_bootstrap(ctx.settings)})
    metadata = admin.list_topics(timeout=timeout_s)
    factor, min_isr = replication_for(len(metadata.brokers), override=ctx.settings.kafka_replication)
    new = [NewTopic(name, num_partitions=n, replication_factor=factor,
                    config={"cleanup.policy": "compact", "min.insync.replicas": str(min_isr)})
           for name, n in sorted(wanted.items()) if name not in metadata.topics]
    created = []
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
            try:
                fut.result(timeout=timeout_s)
                created.append(name)
            except Exception as exc:  # noqa: BLE001 - another worker may have created it first
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise TopicError(f"could not create changelog topic {name}: {exc}") from None
    deadline = time.monotonic() + timeout_s
    while True:
        md = admin.list_topics(timeout=timeout_s).topics
        missing = [n for n, parts in wanted.items()
                   if n not in md or md[n].error is not None or len(md[n].partitions) != parts]
        if not missing:
            return created
        if time.monotonic() > deadline:
            raise TopicError(f"changelog topics not ready after {timeout_s:.0f} s: {', '.join(missing)}")
        time.sleep(0.1)


def run_worker(app, loglevel: str = "warning") -> None:
    """Run ``app`` as a Faust worker until SIGTERM/SIGINT (blocks; exits the process).

    Faust's terminal spinner is switched off: with it, Faust sets the root logger to DEBUG so that
    every debug record can spin it, and aiokafka then builds a log record for every message it
    sends (a third of a pass-through agent's time in ``pulse bench backbone``'s profile).

    The garbage collector is tuned for a stream worker, which allocates a few short-lived objects
    per event and almost no cycles: objects alive at start-up are frozen out of collection
    (``gc.freeze``) and a young-generation collection runs every 50,000 allocations instead of
    700 (about +10 % events/s for the pass-through agent, measured with ``pulse bench backbone``).
    """
    import gc

    from faust.worker import Worker

    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    worker = Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()
