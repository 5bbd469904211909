"""``pulse bench delivery``: events/s through each delivery agent on the real broker, beside the
pass-through agent in the same run (:mod:`streams.bench.delivery`). The JSON goes to stdout;
progress bars to stderr."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streams.cli.common import bench_app, bench_progress, friendly, settings
from streams.cli.ranking import DUMP_HELP, _history


@bench_app.command("delivery")
@friendly
def bench_delivery(stackexchange: Optional[Path] = typer.Option(None, "--stackexchange", help=DUMP_HELP),
                   copies: int = typer.Option(1, "--copies", min=1, max=50,
                                              help="Replicate the history with new ids this many times "
                                                   "(a site with COPIES times the users)."),
                   timeout_s: float = typer.Option(900.0, "--timeout-s", min=10.0,
                                                   help="Longest wait for one agent's run.")) -> None:
    """Replay a Stack Exchange history through the delivery agents in process to derive every
    topic's records, publish them to servers of its own, then time each delivery agent alone in a
    Faust worker and the pass-through agent (baseline); one JSON object."""
    from streams.bench.delivery import run_delivery_bench

    path, history = _history(stackexchange)
    with bench_progress("delivery") as (on_step, on_progress):
        result = run_delivery_bench(history, settings(), dataset=path.name, copies=copies,
                                    timeout_s=timeout_s, on_step=on_step, on_progress=on_progress)
    print(json.dumps(result, indent=2))
