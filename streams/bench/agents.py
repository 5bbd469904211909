"""An AI agent's throughput through the real broker, beside the pass-through agent's in the same
run (``pulse bench moderation`` / ``pulse bench copyright``).

:func:`bench_agent_throughput` starts its own servers in a temporary ``PULSE_HOME`` (or uses the
given ones), creates the catalog topics, publishes the given events, runs the registered agent in
its own Faust worker process (models and banks loaded before the clock starts), and times it
from its first batch until it has processed every event. The baseline is the backbone bench's
pass-through agent (decode, validate, re-encode, emit) over the same number of events.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from streams.bench import bench_servers
from streams.settings import Settings
from streams.bench.backbone import _run_loop

Step = Callable[[str], None]


def _agent_run(settings: Settings, agent: str, n: int, timeout_s: float) -> dict:
    env = {"PULSE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "PULSE_CASSANDRA_HOSTS": ",".join(settings.cassandra_hosts)}
    env.update({v: os.environ[v] for v in ("PULSE_GATES", "PULSE_MODERATION_MODEL",
                                           "PULSE_MEDIA_MAX_BYTES") if os.environ.get(v)})
    return _run_loop("agent", settings, agent, "-", n, timeout_s, env)


def bench_agent_throughput(agent: str, events: Iterable[tuple[str, dict]], *,
                           settings: Settings | None = None, timeout_s: float = 900.0,
                           on_step: Step = lambda m: None) -> dict:
    """``{"agent", "events", "agent_per_s", "baseline_passthrough_per_s", "ratio", ...}``.

    ``events`` are ``(topic, record)`` pairs for the agent's source topics (and any topic it
    reads as a global table, such as ``copyright-references``, published first); only events on
    the agent's own source topics are counted.
    """
    from agents.registry import AGENTS

    from streams.stores.cassandra import apply_schema
    from streams.producer import Publisher
    from streams.servers.topics_admin import create_topics
    from streams.bench.backbone import bench_passthrough

    spec = AGENTS[agent]
    events = list(events)
    n = sum(1 for t, _ in events if t in spec.topics)

    def run(s: Settings) -> dict:
        create_topics(s)
        apply_schema(s)
        on_step(f"publishing {len(events)} events")
        with Publisher(s, producer_name="bench") as pub:
            for topic, record in events:
                pub.publish(topic, record)
        on_step(f"{agent} over {n} events")
        out = _agent_run(s, agent, n, timeout_s)
        on_step(f"pass-through agent over {n} events (baseline)")
        base = bench_passthrough(s, n, timeout_s)
        rate = out["events"] / out["seconds"]
        return {"agent": agent, "events": out["events"], "seconds": round(out["seconds"], 2),
                "agent_per_s": round(rate, 1), "dead_letters": out.get("dead_letters", 0),
                "baseline_passthrough_per_s": base["pulse_agent_per_s"],
                "ratio": round(rate / base["pulse_agent_per_s"], 4)}

    if settings is not None:
        return run(settings)
    with bench_servers(on_step=on_step) as (s, _home, _up):
        return run(s)


def copyright_events(images: list[Path], *, references: int = 20, uploads: int = 200) -> list[tuple[str, dict]]:
    """Registered works (the first ``references`` images, fingerprints computed as ``pulse
    copyright register`` does) and ``uploads`` image uploads cycling over every image (so some
    match a work and most do not)."""
    from models.copyright import reference_fingerprints

    out: list[tuple[str, dict]] = []
    for p in images[:references]:
        modality, fps = reference_fingerprints(p)
        out.append(("copyright-references", {
            "reference_id": f"bench-{p.stem}", "rights_holder_id": "bench-studio", "action": "REGISTER",
            "title": p.stem, "media_kind": modality, "media_uri": p.resolve().as_uri(),
            "fingerprints": fps, "policy": "BLOCK", "metadata": {}}))
    for i in range(uploads):
        p = images[i % len(images)]
        out.append(("uploads", _upload(f"bench-c-{i}", "IMAGE", p.resolve().as_uri(), "a photo")))
    return out


def moderation_events(texts: list[str], n: int = 2000) -> list[tuple[str, dict]]:
    """``n`` text uploads whose captions are real texts (cycled)."""
    return [("uploads", _upload(f"bench-m-{i}", "TEXT", None, texts[i % len(texts)]))
            for i in range(n)]


def _upload(post_id: str, kind: str, media_uri: str | None, caption: str) -> dict:
    return {"post_id": post_id, "creator_id": "bench-creator", "kind": kind,
            "content_type": "FOREVER", "media_uri": media_uri, "caption": caption, "hashtags": [],
            "duration_ms": None, "size_bytes": None}
