"""`pulse bench backbone`: the backbone's speed, each figure beside a baseline from the same run.

- codec: Pulse's Avro single-object encode/decode (with validation) vs plain fastavro
  ``schemaless_writer``/``schemaless_reader`` of the same records;
- publish: ``Publisher.publish`` (validate, encode, produce) vs a plain confluent-kafka producer
  sending pre-encoded bytes, both until the broker acknowledged everything;
- pass-through: Pulse's pass-through agent in a Faust worker vs a plain confluent-kafka
  consume-produce loop copying bytes, and vs the same plain loop doing the agent's Avro work
  (decode, validate, encode), each in its own process, over the same pre-loaded topic;
- up: seconds from `pulse up` on an empty PULSE_HOME until Kafka and Cassandra both answer.

The benchmark starts its own servers in a temporary PULSE_HOME (so `up` is measured cold) and
stops them at the end.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

from streams.bench import bench_servers
from streams.settings import REPO_ROOT, Settings

Step = Callable[[str], None]


def sample_uploads(n: int) -> list[dict]:
    """``n`` realistic Upload records (a ~300-character caption, 3 hashtags, media fields)."""
    base = 1_700_000_000_000
    words = ("qubit entanglement circuit gate noise error decoherence algorithm measurement "
             "superposition hamiltonian annealing").split()
    out = []
    for i in range(n):
        caption = " ".join(words[(i + k) % len(words)] for k in range(40))
        out.append({
            "event_id": str(uuid.UUID(int=i + 1, version=4)), "event_time": base + i,
            "producer": "bench", "post_id": f"bench-p{i}", "creator_id": f"bench-u{i % 5000}",
            "kind": ("TEXT", "IMAGE", "VIDEO")[i % 3], "content_type": ("FLASH", "MEMORY", "FOREVER")[i % 3],
            "media_uri": None if i % 3 == 0 else f"file:///media/{i}.bin", "caption": caption,
            "title": None, "hashtags": [words[i % 12], words[(i + 5) % 12], "bench"],
            "duration_ms": 15_000 if i % 3 == 2 else None, "size_bytes": 1_000_000 + i,
            "width": 1280, "height": 720, "parent_post_id": None,
        })
    return out


def bench_codec(n: int = 50_000) -> dict:
    """Encode and decode events/s: Pulse's codec vs plain fastavro on the same records."""
    import fastavro

    from streams.contracts.codec import AvroCodec
    from streams.contracts.schemas import default_catalog

    cat = default_catalog()
    codec = AvroCodec(cat, "Upload")
    parsed = cat.current("Upload").parsed
    records = sample_uploads(n)

    def plain_encode(r):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r)
        return buf.getvalue()

    def timed(fn, items):
        t0 = time.perf_counter()
        out = [fn(x) for x in items]
        return out, n / (time.perf_counter() - t0)

    plain_bytes, plain_enc = timed(plain_encode, records)
    _, plain_dec = timed(lambda b: fastavro.schemaless_reader(io.BytesIO(b), parsed, parsed), plain_bytes)
    pulse_bytes, pulse_enc = timed(codec.encode, records)
    _, pulse_dec = timed(codec.decode, pulse_bytes)
    return {"events": n, "encode_per_s": round(pulse_enc), "decode_per_s": round(pulse_dec),
            "baseline_fastavro_encode_per_s": round(plain_enc),
            "baseline_fastavro_decode_per_s": round(plain_dec),
            "encode_ratio": round(pulse_enc / plain_enc, 3), "decode_ratio": round(pulse_dec / plain_dec, 3),
            "bytes_per_event": round(sum(map(len, pulse_bytes)) / n, 1)}


def _create(settings: Settings, names: list[str], partitions: int = 4) -> None:
    from streams.contracts.topics import TopicSpec
    from streams.servers.topics_admin import create_topics

    create_topics(settings, [TopicSpec(nm, "Upload", "post_id", partitions, 1, "log") for nm in names])


def bench_publish(settings: Settings, n: int = 100_000) -> dict:
    """Publish events/s until acknowledged: ``Publisher`` vs a plain confluent-kafka producer."""
    from confluent_kafka import Producer

    from streams.contracts.codec import AvroCodec
    from streams.producer import Publisher
    from streams.contracts.schemas import default_catalog

    run = uuid.uuid4().hex[:8]
    pulse_topic, plain_topic = f"bench-publish-pulse-{run}", f"bench-publish-plain-{run}"
    _create(settings, [pulse_topic, plain_topic])
    records = sample_uploads(n)
    codec = AvroCodec(default_catalog(), "Upload")
    encoded = [(r["post_id"].encode(), codec.encode(r)) for r in records]

    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 10,
                  "compression.type": "lz4", "enable.idempotence": True, "acks": "all",
                  "queue.buffering.max.messages": 1_000_000, "partitioner": "murmur2_random"})
    t0 = time.perf_counter()
    for key, value in encoded:
        while True:
            try:
                p.produce(plain_topic, value, key)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(120)
    plain = n / (time.perf_counter() - t0)

    from streams.contracts.topics import TopicSpec
    import streams.contracts.topics as topics_mod

    spec = TopicSpec(pulse_topic, "Upload", "post_id", 4, 1, "log")
    topics_mod.topic_catalog()[pulse_topic] = spec  # register the run's topic for topic_spec()
    try:
        t0 = time.perf_counter()
        with Publisher(settings, producer_name="bench") as pub:
            # in batches, as a bulk producer does: each batch's new subjects' keys made together
            # (personal fields are sealed: PULSE_PERSONAL_DATA_ENCRYPTION)
            for start in range(0, n, 1_000):
                pub.publish_many(pulse_topic, records[start:start + 1_000])
        pulse = n / (time.perf_counter() - t0)
    finally:
        topics_mod.topic_catalog().pop(pulse_topic, None)
    return {"events": n, "pulse_per_s": round(pulse), "baseline_confluent_producer_per_s": round(plain),
            "ratio": round(pulse / plain, 3)}


def _run_loop(kind: str, settings: Settings, src: str, dst: str, n: int, timeout_s: float,
              env_extra: dict[str, str] | None = None) -> dict:
    """Run one ``streams.bench.loops`` process (``kind``: plain, plain-avro, pulse, agent) and
    return its result JSON; its log tail is in the error when it produced none."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        log = Path(tmp) / "loop.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        env["PULSE_HOME"] = str(settings.home)
        env.update(env_extra or {})
        for var in ("PULSE_BENCH_PROFILE",):
            if kind in ("pulse", "agent") and os.environ.get(var):
                env[var] = os.environ[var]
        with open(log, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "streams.bench.loops", kind,
                                     settings.kafka_bootstrap, src, dst, str(n), str(result)],
                                    cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not result.exists():
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the {kind} loop produced no result (exit {proc.returncode}):\n{tail}")
        return json.loads(result.read_text())


def bench_passthrough(settings: Settings, n: int = 100_000, timeout_s: float = 600.0) -> dict:
    """Pass-through events/s: Pulse's agent in a Faust worker vs a plain confluent-kafka loop."""
    from confluent_kafka import Producer

    from streams.contracts.codec import AvroCodec
    from streams.contracts.schemas import default_catalog

    from streams.contracts.personal import with_personal_data
    from streams.stores.keys import subject_keys

    run = uuid.uuid4().hex[:8]
    src, out_pulse, out_plain = f"bench-in-{run}", f"bench-out-pulse-{run}", f"bench-out-plain-{run}"
    out_avro = f"bench-out-plain-avro-{run}"
    _create(settings, [src, out_pulse, out_plain, out_avro])
    # the source as a Publisher writes it: personal fields sealed with keys made per batch
    # (PULSE_PERSONAL_DATA_ENCRYPTION), so the agent meets what production logs hold
    keys = subject_keys(settings)
    codec = with_personal_data(AvroCodec(default_catalog(), "Upload"), keys)
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20, "enable.idempotence": True,
                  "acks": "all", "queue.buffering.max.messages": 1_000_000, "partitioner": "murmur2_random"})
    records = sample_uploads(n)
    try:
        for start in range(0, len(records), 1_000):
            chunk = records[start:start + 1_000]
            if hasattr(codec, "prepare"):
                codec.prepare(chunk)
            for r in chunk:
                while True:
                    try:
                        p.produce(src, codec.encode(r), r["post_id"].encode())
                        break
                    except BufferError:
                        p.poll(0.05)
    finally:
        if keys is not None:
            keys.close()
    p.flush(120)
    plain = _run_loop("plain", settings, src, out_plain, n, timeout_s)
    avro = _run_loop("plain-avro", settings, src, out_avro, n, timeout_s)
    pulse = _run_loop("pulse", settings, src, out_pulse, n, timeout_s)
    pulse_rate = pulse["events"] / pulse["seconds"]
    plain_rate = plain["events"] / plain["seconds"]
    avro_rate = avro["events"] / avro["seconds"]
    return {"events": n, "pulse_agent_per_s": round(pulse_rate),
            "baseline_confluent_loop_per_s": round(plain_rate), "ratio": round(pulse_rate / plain_rate, 3),
            "baseline_confluent_loop_same_avro_work_per_s": round(avro_rate),
            "ratio_same_work": round(pulse_rate / avro_rate, 3),
            "dead_letters": pulse.get("dead_letters", 0), "goal_per_s": 20_000, "goal_ratio": 0.5}


def run_backbone(n_codec: int = 50_000, n_publish: int = 100_000, n_passthrough: int = 100_000,
                 on_step: Step = lambda m: None) -> dict:
    """All backbone figures as one dict (see the module docstring)."""
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    on_step("codec")
    result["codec"] = bench_codec(n_codec)
    with bench_servers(on_step=on_step) as (settings, _home, up_seconds):
        result["up"] = {"seconds_until_both_answer": round(up_seconds, 1)}
        on_step("publish")
        result["publish"] = bench_publish(settings, n_publish)
        on_step("pass-through agent")
        result["passthrough"] = bench_passthrough(settings, n_passthrough)
    return result
