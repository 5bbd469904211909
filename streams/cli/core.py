"""The backbone's commands: servers, topics, workers, publishing, views, replay, export, and
fingerprints."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from streams.settings import Settings
from streams.demo.sources.stackexchange import SAMPLE_DUMP
from streams.cli.common import (app, bench_app, console, err_console, friendly, register_user_errors,
                     settings, topics_app)
from streams.cli.tables import RecordTable


# ---------------------------------------------------------------------------------- servers


@app.command()
@friendly
def up(brokers: Optional[int] = typer.Option(
            None, "--brokers", min=1,
            help="Kafka brokers (KRaft, each also a controller) on 127.0.0.1; default: as this PULSE_HOME "
                 "has (PULSE_KAFKA_BROKERS), else 1."),
        cassandra_nodes: Optional[int] = typer.Option(
            None, "--cassandra-nodes", min=1,
            help="Cassandra nodes on 127.0.0.1, 127.0.0.2, ...; default: as this PULSE_HOME has "
                 "(PULSE_CASSANDRA_NODES), else 1.")) -> None:
    """Start embedded Kafka and Cassandra (unless external ones are configured), create the topics
    and the views, and print what runs where. With 3 brokers or nodes, topics get 3 replicas
    (min ISR 2) and the keyspace replication factor 3 with QUORUM reads and writes (docs/clusters.md)."""
    from streams.servers.supervisor import up as servers_up

    env = dict(os.environ)
    if brokers is not None:
        env["PULSE_KAFKA_BROKERS"] = str(brokers)
    if cassandra_nodes is not None:
        env["PULSE_CASSANDRA_NODES"] = str(cassandra_nodes)
    s = Settings.from_env(env)
    with console.status("starting servers") as status:
        servers_up(s, on_step=lambda m: status.update(m))
    s = settings()  # re-read: the state file now has the addresses and the cluster sizes
    _prepare(s)
    _print_status(s)


def _prepare(s: Settings) -> None:
    from streams.servers.provision import provision

    done = provision(s)
    n_new = sum(1 for v in done.topics.values() if v == "created")
    console.print(f"topics: {n_new} created, {len(done.topics) - n_new} already there")
    for k, v in done.topics.items():
        if v.startswith("exists (") or "configs set" in v:
            console.print(f"[yellow]topic {k}: {v}[/]")
    console.print(f"views: keyspace {s.cassandra_keyspace}, {done.cql_statements - 1} tables ready")
    if done.collections:
        console.print(f"vectors: collections {', '.join(done.collections)} ready")
    for note in done.notes:
        console.print(f"[yellow]{note}[/]")


@app.command()
@friendly
def down() -> None:
    """Stop what `pulse up` started (by PID, nothing else). Data is kept for the next `up`."""
    from streams.servers.supervisor import down as servers_down

    stopped = servers_down(settings())
    for line in stopped or ["nothing was running"]:
        console.print(line)


@app.command()
@friendly
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show each server: running, stopped or external, its address and PID."""
    s = settings()
    if as_json:
        from streams.servers.supervisor import status as servers_status

        print(json.dumps(servers_status(s), default=str, indent=2))
    else:
        _print_status(s)


def _print_status(s: Settings) -> None:
    from streams.servers.supervisor import status as servers_status

    st = servers_status(s)
    t = RecordTable(f"Pulse servers (PULSE_HOME={s.home})")
    for col in ("server", "state", "address", "pid", "answering"):
        t.add_column(col)
    for name, info in st.items():
        if not isinstance(info, dict):
            continue
        t.add_row(name, str(info.get("state", "")), str(info.get("address", "")),
                  str(info.get("pid", "") or ""), str(info.get("answering", "")))
        for node in info.get("nodes", ()):  # a cluster: one row per node
            t.add_row(f"  {node['server']}", node["state"], str(node["address"] or ""),
                      str(node["pid"] or ""), str(node["answering"]))
    console.print(t)


# ----------------------------------------------------------------------------------- topics


@topics_app.command("create")
@friendly
def topics_create() -> None:
    """Create every topic of the catalog that is missing (idempotent)."""
    from streams.servers.topics_admin import create_topics

    for name, outcome in create_topics(settings()).items():
        console.print(f"{name}: {outcome}")


@topics_app.command("list")
@friendly
def topics_list(as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                internal: bool = typer.Option(False, help="Include Kafka's internal topics.")) -> None:
    """Topics on the cluster with partition counts and end offsets."""
    from streams.contracts.topics import topic_catalog
    from streams.servers.topics_admin import list_topics

    infos = list_topics(settings(), include_internal=internal)
    if as_json:
        print(json.dumps([{"topic": i.name, "partitions": i.partitions,
                           "end_offsets": list(i.end_offsets), "messages": i.messages,
                           "in_catalog": i.in_catalog} for i in infos], indent=2))
        return
    cat = topic_catalog()
    t = RecordTable("topics")
    t.add_column("topic")
    t.add_column("partitions", justify="right")
    t.add_column("end offsets", justify="right")  # summed over the partitions
    t.add_column("event type")
    t.add_column("policy")
    for i in infos:
        spec = cat.get(i.name)
        t.add_row(i.name, str(i.partitions), str(i.messages),
                  spec.schema if spec else "-", spec.policy if spec else "-")
    console.print(t)


# ----------------------------------------------------------------------------------- worker


@app.command()
@friendly
def agents() -> None:
    """List the registered agents: what each consumes, emits, keeps and reads."""
    from agents.registry import AGENTS

    t = RecordTable("agents")
    t.add_column("agent")
    for spec in AGENTS.values():
        details = [("consumes", ", ".join(spec.topics))]
        if spec.outputs:
            details.append(("emits", ", ".join(spec.outputs)))
        if spec.tables:
            details.append(("state", ", ".join(spec.tables)))
        if spec.side_inputs:
            details.append(("side inputs", ", ".join(f"{s.name} ({s.topic})"
                                                      for s in spec.side_inputs)))
        if spec.sinks:
            details.append(("writes", ", ".join(sorted(spec.sinks))))
        t.add_row(spec.name, details=details + [("", spec.doc)])
    console.print(t)


@app.command()
@friendly
def worker(agent_names: Optional[str] = typer.Option(None, "--agents",
                                                     help="Comma-separated agents (default: all)."),
           loglevel: str = typer.Option("warning", help="Faust/aiokafka log level.")) -> None:
    """Run agents as a Faust worker until SIGTERM/SIGINT. Start several workers (same agents) to
    share the partitions; a killed worker's partitions move to the others."""
    from agents.registry import select

    from streams.runtime.app import create_app, create_changelog_topics, run_worker

    s = settings()
    specs = select(agent_names)
    faust_app, ctx = create_app(s, specs)
    # every agent loads its models, opens its sinks and reads its side inputs before the worker
    # joins the group: a missing model or a vector index another process holds stops the worker
    # here with its reason, instead of failing every batch later
    for sp in specs:
        with err_console.status(f"loading {sp.name}"):
            try:
                ctx.prepare(sp)
            except Exception as exc:
                ctx.close()
                raise WorkerSetupError(f"agent {sp.name} could not start: {exc}") from exc
    create_changelog_topics(faust_app, ctx)
    from streams.runtime.metrics import serve_worker_metrics

    metrics_url = serve_worker_metrics(s, ctx.metrics, agents=[sp.name for sp in specs],
                                       topics=[t for sp in specs for t in sp.topics])
    err_console.print(f"worker: agents {', '.join(sp.name for sp in specs)} on {s.kafka_bootstrap} "
                      f"(consumer group {s.app_id})"
                      + (f"; metrics at {metrics_url}" if metrics_url else ""))
    run_worker(faust_app, loglevel)


class WorkerSetupError(RuntimeError):
    """An agent's models or stores could not be loaded when the worker started."""


register_user_errors(WorkerSetupError)


# --------------------------------------------------------------------------------- publishing


@app.command()
@friendly
def publish(file: Path = typer.Argument(..., help="JSON Lines file, one event per line."),
            topic: str = typer.Option(..., "--topic", help="Topic to publish to.")) -> None:
    """Validate each line against the topic's schema and publish it; bad lines are reported with
    their line number and sent to `dead-letters` with their original text."""
    from rich.progress import Progress

    from streams.producer import Publisher, publish_jsonl

    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file")
    total = sum(1 for _ in open(file, "rb"))
    with Publisher(settings(), producer_name="pulse-publish") as pub, Progress(console=err_console) as bar:
        task = bar.add_task(f"publishing to {topic}", total=total)
        report = publish_jsonl(pub, file, topic, on_line=lambda n: bar.update(task, completed=n))
    for n, reason in report.errors:
        err_console.print(f"[red]line {n}:[/] {reason}", highlight=False)
    console.print(f"published {report.published}, invalid {report.invalid} "
                  f"(sent to dead-letters: {report.dead_lettered})")
    if report.invalid:
        raise typer.Exit(2)


@app.command("dead-letters")
@friendly
def dead_letters(limit: int = typer.Option(20, help="How many to show (newest last)."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON lines.")) -> None:
    """List dead letters: where each came from, why, and the start of its original bytes."""
    from replay.reader import read_topic

    rows = list(read_topic(settings(), "dead-letters", last=limit))
    if as_json:
        for pos, rec in rows:
            rec = dict(rec, key=(rec.get("key") or b"").decode("utf-8", "replace"),
                       value=rec["value"].decode("utf-8", "replace"))
            print(json.dumps(rec, default=str))
        return
    if not rows:
        console.print("no dead letters")
        return
    t = RecordTable(f"dead-letters (last {limit})")
    t.add_column("offset", justify="right")
    t.add_column("source")
    t.add_column("consumer")
    for pos, rec in rows:
        src = f"{rec['source_topic']}[{rec.get('partition')}]@{rec.get('offset')}" \
            if rec.get("partition") is not None else rec["source_topic"]
        t.add_row(str(pos.offset), src, rec.get("consumer", ""),
                  details=[("reason", rec["reason"]),
                           ("original (start)", rec["value"][:60].decode("utf-8", "replace"))])
    console.print(t)


# -------------------------------------------------------------------------------------- views


@app.command()
@friendly
def posts(creator: str = typer.Option(..., "--creator", help="Creator's user id."),
          limit: int = typer.Option(20, help="How many, newest first.")) -> None:
    """A creator's posts, newest first, read from the Cassandra view."""
    from streams.query.views import posts_by_creator

    rows = posts_by_creator(settings(), creator, limit)
    t = RecordTable(f"posts by {creator}")
    for col in ("uploaded (UTC)", "post", "kind"):
        t.add_column(col)
    for r in rows:
        what = r["title"] or r["caption"] or ""
        t.add_row(r["uploaded_at"].strftime("%Y-%m-%d %H:%M"), r["post_id"], r["kind"],
                  details=[("", what[:150] + ("…" if len(what) > 150 else "")),
                           ("", " ".join(f"#{h}" for h in r["hashtags"] or []))])
    console.print(t if rows else f"no posts by {creator}")


@app.command()
@friendly
def follows(user_id: str = typer.Argument(..., help="User id."),
            limit: int = typer.Option(20, help="How many followees to list.")) -> None:
    """Whom a user follows, and their follower and following counts, from the Cassandra views."""
    from streams.query.views import follow_summary

    f = follow_summary(settings(), user_id, limit)
    console.print(f"{user_id}: {f['followers']} followers, follows {f['following']}")
    for row in f["followees"]:
        console.print(f"  -> {row['followee_id']} (since {row['since']:%Y-%m-%d})")


@app.command()
@friendly
def demo(stackexchange: Path = typer.Option(
             SAMPLE_DUMP, help="A Stack Exchange data dump directory (Users.xml, Posts.xml, "
                               "Comments.xml, Votes.xml, each plain or .gz); default: the "
                               "quantumcomputing sample shipped in streams/demo/data.",
             show_default=False),
         media: Optional[Path] = typer.Option(None, help="A directory of video clips and images."),
         photos: bool = typer.Option(True, help="Publish scikit-image's sample photos."),
         timeout: float = typer.Option(1800.0, help="Seconds to wait for the agents to catch up.")) -> None:
    """Run the main job: servers up, agents running, real input published, summary printed."""
    from streams.demo.run import DemoError, print_summary, run_demo

    try:
        result = run_demo(settings(), stackexchange=stackexchange, media=media, photos=photos,
                          timeout_s=timeout, console=err_console)
    except DemoError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1)
    print_summary(result, console)
    console.print("servers keep running: try `pulse posts --creator ...`, `pulse follows ...`; "
                  "`pulse down` stops them")


@bench_app.command("backbone")
@friendly
def bench_backbone(events: int = typer.Option(100_000, help="Events per publish / pass-through run."),
                   codec_events: int = typer.Option(50_000, help="Events for the codec figures.")) -> None:
    """Codec, publish and pass-through-agent throughput against same-run baselines, and the
    time `pulse up` takes; prints one JSON object."""
    from streams.bench.backbone import run_backbone

    with err_console.status("benchmarking") as st:
        result = run_backbone(codec_events, events, events, on_step=lambda m: st.update(f"bench: {m}"))
    print(json.dumps(result, indent=2))


# ------------------------------------------------------------------------------ replay, export


def _time_range(start: Optional[str], end: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """``--from`` / ``--to`` as UTC epoch ms; a bad or empty range is a usage error (exit 2)."""
    from replay.rebuild import TimeRangeError, check_range, parse_time_ms

    out = []
    for flag, value in (("--from", start), ("--to", end)):
        try:
            out.append(None if value is None else parse_time_ms(value, ""))
        except TimeRangeError as exc:
            raise typer.BadParameter(str(exc), param_hint=f"'{flag}'") from None
    try:
        check_range(*out)
    except TimeRangeError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--from' / '--to'") from None
    return out[0], out[1]


_FROM_HELP = "ISO-8601 time (UTC unless it has an offset) or epoch ms: start at this Kafka timestamp."
_TO_HELP = "ISO-8601 time or epoch ms: stop before this Kafka timestamp (default: the end offsets now)."


@app.command()
@friendly
def export(topics: list[str] = typer.Argument(..., help="Topics to export, together."),
           out: Optional[Path] = typer.Option(None, "--out",
                                              help="Parquet file to write, for one topic (replaced if it exists)."),
           out_dir: Optional[Path] = typer.Option(None, "--out-dir",
                                                  help="Directory to write TOPIC.parquet of each topic into."),
           start: Optional[str] = typer.Option(None, "--from", help=_FROM_HELP),
           end: Optional[str] = typer.Option(None, "--to", help=_TO_HELP),
           skip_undecodable: bool = typer.Option(False, "--skip-undecodable",
                                                 help="Leave out messages that do not decode."),
           jobs: Optional[int] = typer.Option(None, "--jobs", min=1,
                                              help="Processes that read and decode partitions side "
                                                   "by side, the topics together (default: one per "
                                                   "CPU, at most one per partition and per 100,000 "
                                                   "messages).")) -> None:
    """Write topics' events to Parquet, a file per topic: one column per schema field (types from
    the Avro contract) plus _topic, _partition, _offset and _timestamp_ms."""
    from rich.progress import Progress

    from replay.export import ExportError, export_topics
    from replay.reader import message_counts

    from streams.contracts.codec import CodecError
    from streams.contracts.topics import topic_spec

    start_ms, end_ms = _time_range(start, end)
    if len(set(topics)) < len(topics):
        raise typer.BadParameter("a topic is named twice", param_hint="TOPICS")
    if (out is None) == (out_dir is None):
        raise typer.BadParameter("give either --out FILE (one topic) or --out-dir DIR",
                                 param_hint="--out / --out-dir")
    if out is not None and len(topics) > 1:
        raise typer.BadParameter(f"--out names one file; for {len(topics)} topics give --out-dir DIR",
                                 param_hint="--out")
    s = settings()
    for topic in topics:
        topic_spec(topic)
    outputs = {topics[0]: out} if out is not None else {t: out_dir / f"{t}.parquet" for t in topics}
    for path in outputs.values():
        if not path.parent.is_dir():
            raise FileNotFoundError(f"{path.parent}: no such directory")
    with Progress(console=err_console) as bar:
        counts = {t: message_counts(s, t, start_ms) for t in topics}
        tasks = {t: bar.add_task(f"exporting {t}", total=sum(counts[t].values())) for t in topics}
        try:
            results = export_topics(s, outputs, start_ms=start_ms, end_ms=end_ms,
                                    skip_undecodable=skip_undecodable, jobs=jobs, counts=counts,
                                    on_progress=lambda t, n: bar.update(tasks[t], completed=n))
        except CodecError as exc:
            err_console.print(f"[bold red]error:[/] {exc} (--skip-undecodable leaves such messages "
                              f"out; a worker sends them to dead-letters when it consumes them)", highlight=False)
            raise typer.Exit(1)
        except ExportError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1)
        for r in results:
            bar.update(tasks[r["topic"]], completed=r["rows"], total=r["rows"])
    for r in results:
        console.print(f"{r['rows']} rows written to {r['path']} ({r['row_groups']} row groups, "
                      f"{r['bytes']:,} bytes)")
    r = results[0]
    console.print(f"{sum(x['rows'] for x in results)} rows in {r['seconds']:.1f} s, {r['jobs']} "
                  f"process{'es' if r['jobs'] > 1 else ''}")


@app.command()
@friendly
def fingerprint(file: Path = typer.Argument(..., help="An image, audio or video file."),
                as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Fingerprint a file: PDQ and pHash of an image, Chromaprint of audio, and for a video the
    PDQ/pHash of frames sampled about once a second plus keyframes, and its audio track."""
    from models.fingerprints import (chromaprint_file, detect_modality, image_hashes,
                                     video_fingerprint)

    modality = detect_modality(file)
    out: dict = {"file": str(file), "modality": modality}
    if modality == "image":
        h = image_hashes(str(file))
        out.update(width=h.width, height=h.height, pdq=h.pdq_hex, pdq_quality=h.pdq_quality,
                   phash=h.phash_hex)
    elif modality == "audio":
        a = chromaprint_file(file)
        out["audio"] = {"chromaprint": a.encoded, "items": int(len(a.raw)),
                        "duration_s": round(a.duration_s, 3), "algorithm": a.algorithm}
    else:
        v = video_fingerprint(file)
        out.update(duration_s=round(v.duration_s, 3), width=v.width, height=v.height,
                   frames=[{"t_s": f.t_s, "pdq": f.pdq.hex(), "pdq_quality": f.quality,
                            "phash": f.phash.hex()} for f in v.frames],
                   audio=None if v.audio is None else {
                       "chromaprint": v.audio.encoded, "items": int(len(v.audio.raw)),
                       "duration_s": round(v.audio.duration_s, 3),
                       "algorithm": v.audio.algorithm})
    if as_json:
        print(json.dumps(out))
        return
    table = RecordTable(f"{file.name}: {modality}")
    table.add_column("what")
    table.add_column("value")
    for key, value in out.items():
        if key == "frames":  # a hash on its own line, whole
            for f in value:
                table.add_row(f"frame {f['t_s']:.3f} s", f"quality {f['pdq_quality']}",
                              details=[("pdq", f["pdq"])])
        elif key == "audio" and value:
            table.add_row("chromaprint", f"{value['items']} items, {value['duration_s']} s",
                          details=[("", f"{value['chromaprint'][:48]}... (--json: all of it)")])
        elif key not in ("file", "modality"):
            table.add_row(key, str(value))
    console.print(table)
