"""``pulse bench delivery``: events/s through each delivery agent on the real broker, beside the
backbone's pass-through agent in the same run.

Input
    A Stack Exchange history (sign-ups, posts, comments, favourites, follows; the CLI loads it),
    optionally replicated with new ids (``--copies``), is first replayed in process through the delivery chain with the runtime's own
    :class:`~streams.runtime.engine.AgentRunner` (:class:`~streams.bench.ranking.Pipeline`),
    which records every topic's records, the derived ones included::

        signups, interactions, follows, posts-published ─▶ user_profiler ─▶ profiles
        posts-published ─▶ trend_mentions ─▶ trend-mentions ─▶ trend_detector ─▶ trends
        follows, interactions, posts-published ─▶ timing_audience ─▶ timing-audience
            ─▶ timing_optimizer ─▶ golden-moments
        interactions, follows, posts-published, trends, golden-moments ─▶ notification_candidates
            ─▶ notification-candidates ─▶ notification_generator ─▶ notifications
        interactions, posts-published ─▶ analytics_signals ─▶ post-engagements ─▶ post_analytics
            ─▶ creator-engagements ─▶ creator_analytics (and creator-stats)

    Uploads are published as uploaded (no gates), as in ``pulse eval timing``. Every agent's
    input is thus what that agent would read in production on this history, in log order.
    ``notification-feedback`` stays empty (the history has no notification opens).

Runs
    The recorded log is published once to servers of the bench's own (every topic; partitions as
    the catalog says). Each agent then runs alone in its own Faust worker process and consumer
    group from offset 0 (models and side inputs loaded before the clock starts; the clock runs
    from its first batch until it has processed every record of its source topics), writing its
    views to Cassandra and its events to Kafka as in production. Every agent runs twice, in two
    passes: the first warms the servers up (JMH's and YCSB's warm-up phase: a fresh Cassandra
    spent most of a core compiling its write path during the first pass), the second is
    reported (``per_s``; the first as ``warm_up_pass_per_s``). The baseline is the backbone
    bench's pass-through agent (decode, validate, re-encode, emit) over as many events as the
    busiest agent read, after both passes.

Goal (issue 14): each agent at 5,000 events/s or more; a system's figure is its slowest stage.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Callable, Sequence

from streams.contracts.agent import AgentSpec, ms_of
from streams.settings import Settings

Step = Callable[[str], None]
Progress = Callable[[str, int, int], None]

#: The goal of issue 14, events/s through each agent.
GOAL_PER_S = 5_000

#: System -> its agents, upstream stage first. A system whose agents are not registered is left
#: out of the bench (and named in ``not_registered``).
SYSTEMS: dict[str, tuple[str, ...]] = {
    "trends": ("trend_mentions", "trend_detector"),
    "timing": ("timing_audience", "timing_optimizer"),
    "notifications": ("notification_candidates", "notification_generator"),
    "analytics": ("analytics_signals", "post_analytics", "creator_analytics"),
}


def _input(topic: str, record: dict) -> tuple[str, dict]:
    """The topic and record one history event enters (uploads as published posts)."""
    from streams.bench.timing import published_record

    return ("posts-published", published_record(record)) if topic == "uploads" else (topic, record)


def registered_systems() -> tuple[dict[str, tuple[AgentSpec, ...]], list[str]]:
    """``({system: its registered specs}, [systems not registered])``."""
    from agents.registry import AGENTS

    found, missing = {}, []
    for system, names in SYSTEMS.items():
        if all(n in AGENTS for n in names):
            found[system] = tuple(AGENTS[n] for n in names)
        else:
            missing.append(system)
    return found, missing


def delivery_log(history: Sequence[tuple[str, dict]], settings: Settings,
                 specs: Sequence[AgentSpec], copies: int = 1,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, list[dict]]:
    """Every topic's records, in log order, after replaying ``history`` (``(event_type,
    record)`` in time order) through user_profiler and ``specs`` (upstream stages first) in
    process; ``copies`` > 1 replays the history replicated with new ids
    (:func:`streams.bench.replay.scaled_history`: a site with ``copies`` times the users).
    Derived records carry their causes' event times, as in production."""
    from agents import user_profiler
    from streams.bench.ranking import Pipeline
    from streams.bench.replay import scaled_history

    pipe = Pipeline(settings, [(user_profiler.SPEC, None, None, None),
                               *[(spec, spec.load(settings) if spec.load else None, None, None)
                                 for spec in specs]])
    pipe.log = defaultdict(list)
    total = len(history) * copies
    for i, (topic, record) in enumerate(scaled_history(list(history), total)):
        pipe.publish(*_input(topic, record))
        if progress is not None and ((i + 1) % 500 == 0 or i + 1 == total):
            progress(i + 1, total)
    return {topic: [pipe.codec(topic).decode(v) for v in values]
            for topic, values in pipe.log.items()}


def run_delivery_bench(history: Sequence[tuple[str, dict]], settings: Settings, *, dataset: str = "",
                       copies: int = 1, timeout_s: float = 900.0, on_step: Step = lambda m: None,
                       on_progress: Progress = lambda name, done, total: None) -> dict[str, Any]:
    """Derive the log, publish it to servers of the bench's own, time each registered delivery
    agent and the pass-through baseline (module docstring). Returns the JSON-ready report:
    ``{"agents": {name: {"events", "seconds", "per_s", "ratio_to_passthrough", "goal_met"}},
    "systems": {system: {"agents", "min_per_s", "goal_met"}}, "baseline_passthrough": {...},
    "goal_per_s", "goals_met", ...}``. Raises ``RuntimeError`` when an agent's worker produced
    no result (its log tail in the message)."""
    from streams.bench import bench_servers
    from streams.bench.agents import _agent_run
    from streams.bench.backbone import bench_passthrough
    from streams.producer import Publisher
    from streams.servers.topics_admin import create_topics
    from streams.stores.cassandra import apply_schema

    systems, missing = registered_systems()
    specs = [spec for chain in systems.values() for spec in chain]
    on_step(f"replaying {len(history)} history events through the delivery chain (in process)")
    log = delivery_log(history, settings, specs, copies,
                       progress=lambda done, total: on_progress("in-process replay", done, total))
    counts = Counter({topic: len(records) for topic, records in log.items()})
    span = [ms_of(r["event_time"]) for _, r in (history[0], history[-1])] if history else [0, 0]

    with bench_servers(on_step=on_step) as (s, _home, up_seconds):
        create_topics(s)
        apply_schema(s)
        total = sum(counts.values())
        done = 0
        on_step(f"publishing {total} records to {len(counts)} topics")
        with Publisher(s, producer_name="bench") as pub:
            for topic, records in log.items():
                for record in records:
                    pub.publish(topic, record)
                    done += 1
                    if done % 2000 == 0 or done == total:
                        on_progress("publish", done, total)
        agents: dict[str, dict[str, Any]] = {}
        cold: dict[str, float] = {}
        # two passes over the agents, each run in a consumer group and state of its own: the
        # first warms the servers up (a fresh Cassandra's JIT compiler took most of a core for
        # the first minute, as long as the whole first pass), the second is the measurement
        for timed in (False, True):
            for spec in specs:
                n = sum(counts[t] for t in spec.topics)
                if n == 0:
                    agents[spec.name] = {"events": 0, "note": "no input on this history"}
                    continue
                on_step(f"{spec.name} over {n} events" + ("" if timed else " (warm-up pass)"))
                out = _agent_run(s, spec.name, n, timeout_s)
                if not timed:
                    cold[spec.name] = round(out["events"] / out["seconds"], 1)
                    continue
                agents[spec.name] = {"events": out["events"], "seconds": round(out["seconds"], 2),
                                     "per_s": round(out["events"] / out["seconds"], 1),
                                     "warm_up_pass_per_s": cold[spec.name],
                                     "dead_letters": out.get("dead_letters", 0)}
        n_base = max([a["events"] for a in agents.values()] + [10_000])
        on_step(f"pass-through agent over {n_base} events (baseline)")
        base = bench_passthrough(s, n_base, timeout_s)

    base_rate = base["pulse_agent_per_s"]
    for a in agents.values():
        if "per_s" in a:
            a["ratio_to_passthrough"] = round(a["per_s"] / base_rate, 3)
            a["goal_met"] = a["per_s"] >= GOAL_PER_S
    by_system = {}
    for system, chain in systems.items():
        rates = [agents[spec.name]["per_s"] for spec in chain if "per_s" in agents[spec.name]]
        by_system[system] = {"agents": [spec.name for spec in chain],
                             "min_per_s": min(rates) if rates else None,
                             "goal_met": bool(rates) and min(rates) >= GOAL_PER_S}
    return {
        "dataset": dataset, "history_events": len(history), "copies": copies, "history_span_days":
            round((span[1] - span[0]) / 86_400_000, 1),
        "topics": dict(sorted(counts.items())),
        "agents": agents, "systems": by_system, "not_registered": missing,
        "baseline_passthrough": {"events": base["events"], "per_s": base_rate,
                                 "baseline_confluent_loop_per_s": base["baseline_confluent_loop_per_s"]},
        "servers_up_seconds": round(up_seconds, 1),
        "goal_per_s": GOAL_PER_S,
        "goals_met": bool(by_system) and all(v["goal_met"] for v in by_system.values()),
    }
