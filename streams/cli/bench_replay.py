"""``pulse bench replay``: export and view rebuild over the Stack Exchange history scaled to a
million events, beside a plain confluent-kafka read (:mod:`streams.bench.replay`). The JSON goes
to stdout; progress bars to stderr."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streams.cli.common import bench_app, bench_progress, friendly
from streams.cli.ranking import DUMP_HELP, _history


@bench_app.command("replay")
@friendly
def bench_replay(events: int = typer.Option(1_000_000, "--events", min=1,
                                            help="Events to publish: the history replicated with "
                                                 "new ids until it holds this many."),
                 stackexchange: Optional[Path] = typer.Option(None, "--stackexchange", help=DUMP_HELP)) -> None:
    """Publish a Stack Exchange history scaled to EVENTS (independent copies with new ids), then
    time a plain confluent-kafka read of its topics (baseline), `pulse export` of each to Parquet
    and `pulse replay rebuild --agents materializer`, in servers of its own; one JSON object."""
    from streams.bench.replay import run_replay_bench

    path, history = _history(stackexchange)
    with bench_progress("replay") as (on_step, on_progress):
        result = run_replay_bench(history, events, dataset=path.name, on_step=on_step,
                                  on_progress=on_progress)
    print(json.dumps(result, indent=2))
