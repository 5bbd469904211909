"""The two consume-transform-produce loops `pulse bench backbone` compares, each run in its own
process (one core each): Pulse's pass-through agent in a Faust worker, and a plain confluent-kafka
consume-produce loop. Each writes ``{"events": n, "seconds": s}`` to a result file, timed from
the first consumed message to the last produced one acknowledged by the broker.

Run as ``python -m streams.bench.loops pulse|plain|plain-avro BOOTSTRAP SRC DST N RESULT_JSON``.
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid


def plain_loop(bootstrap: str, src: str, dst: str, n: int, result: str, avro: bool = False) -> None:
    """Baseline: confluent-kafka ``consume(1000)`` -> produce. ``avro=False`` copies the bytes;
    ``avro=True`` does the pass-through agent's work (decode, validate, encode with Pulse's
    codec) in the plain loop, isolating what the Faust runtime itself costs."""
    from confluent_kafka import Consumer, Producer

    from streams.contracts.codec import AvroCodec
    from streams.contracts.schemas import default_catalog

    codec = AvroCodec(default_catalog(), "Upload")

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-plain-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": True})
    # idempotent with acks=all, like Pulse's publisher and its workers' producer (docs/clusters.md)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "partitioner": "murmur2_random",
                  "enable.idempotence": True, "acks": "all", "queue.buffering.max.messages": 1_000_000})
    c.subscribe([src])
    done, t0 = 0, None
    while done < n:
        for m in c.consume(1000, 1.0):
            if m.error():
                continue
            if t0 is None:
                t0 = time.perf_counter()
            value = codec.encode(codec.decode(m.value())) if avro else m.value()
            while True:
                try:
                    p.produce(dst, value, m.key())
                    break
                except BufferError:
                    p.poll(0.01)
            done += 1
        p.poll(0)
    p.flush(60)
    seconds = time.perf_counter() - t0
    c.close()
    with open(result, "w") as fh:
        json.dump({"events": done, "seconds": seconds}, fh)


def pulse_loop(bootstrap: str, src: str, dst: str, n: int, result: str) -> None:
    """Pulse: the pass-through agent (decode, validate, re-encode, emit) in a Faust worker."""
    from agents.passthrough import make_spec
    from streams.runtime.app import create_app, run_worker
    from streams.settings import Settings

    settings = Settings.from_env({**os.environ, "PULSE_KAFKA_BOOTSTRAP": bootstrap,
                                  "PULSE_APP_ID": f"bench-pulse-{uuid.uuid4().hex[:8]}"})
    spec = make_spec(src, dst, "Upload")
    app, ctx = create_app(settings, [spec])

    profile_to = os.environ.get("PULSE_BENCH_PROFILE")  # a path: dump cProfile stats of the run
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    @app.timer(0.05)
    async def watch():
        if ctx.counters["emitted"] >= n:
            await app.producer.flush()
            seconds = time.perf_counter() - ctx.first_batch_at
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile_to)
            with open(result, "w") as fh:
                json.dump({"events": ctx.counters["emitted"], "seconds": seconds,
                           "dead_letters": ctx.counters["dead_letters"]}, fh)
            os._exit(0)

    run_worker(app, "error")


def agent_loop(bootstrap: str, agent: str, n: int, result: str) -> None:
    """A registered agent in a Faust worker: its processor (models, banks) is built before the
    worker starts, and the clock runs from its first batch until ``n`` events are processed."""
    from agents.registry import AGENTS
    from streams.runtime.app import create_app, run_worker
    from streams.settings import Settings

    settings = Settings.from_env({**os.environ, "PULSE_KAFKA_BOOTSTRAP": bootstrap,
                                  "PULSE_APP_ID": f"bench-{agent}-{uuid.uuid4().hex[:8]}"})
    spec = AGENTS[agent]
    app, ctx = create_app(settings, [spec])
    ctx.prepare(spec)  # load models and side inputs before the clock starts

    profile_to = os.environ.get("PULSE_BENCH_PROFILE")  # a path: dump cProfile stats of the run
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    @app.timer(0.05)
    async def watch():
        if ctx.counters["events"] >= n:
            await app.producer.flush()
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile_to)
            with open(result, "w") as fh:
                json.dump({"events": ctx.counters["events"],
                           "seconds": time.perf_counter() - ctx.first_batch_at,
                           "dead_letters": ctx.counters["dead_letters"]}, fh)
            os._exit(0)

    run_worker(app, "error")


if __name__ == "__main__":
    kind, bootstrap, src, dst, n, result = sys.argv[1:7]
    if kind == "agent":
        agent_loop(bootstrap, src, int(n), result)
    elif kind == "pulse":
        pulse_loop(bootstrap, src, dst, int(n), result)
    else:
        plain_loop(bootstrap, src, dst, int(n), result, avro=kind == "plain-avro")
