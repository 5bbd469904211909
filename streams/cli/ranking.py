"""``pulse eval ranking``: prequential evaluation of the feed ranking on a Stack Exchange dump
(:mod:`streams.bench.ranking`). The JSON report goes to stdout; progress and a summary table to
stderr, so ``pulse eval ranking > report.json`` keeps a clean JSON file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streams.cli.common import err_console, eval_app, friendly, settings, train_app

SHARED_DUMP = Path("../shared/data/stackexchange-quantumcomputing")
DUMP_HELP = ("Stack Exchange dump directory (default ../shared/data/stackexchange-quantumcomputing "
             "if present, else the shipped sample).")


def _default_dump() -> Path:
    from streams.demo.sources.stackexchange import SAMPLE_DUMP

    return SHARED_DUMP if SHARED_DUMP.is_dir() else SAMPLE_DUMP


def _history(stackexchange: Optional[Path]) -> tuple[Path, list]:
    """``(dump directory, its events in time order)``; a missing or wrong directory raises an
    error the CLI prints in one line."""
    from streams.demo.sources.stackexchange import iter_events_in_time_order, load_dump

    path = stackexchange if stackexchange is not None else _default_dump()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such Stack Exchange dump directory")
    if not path.is_dir():
        raise NotADirectoryError(f"{path}: not a directory (give a Stack Exchange dump directory)")
    try:
        dump = load_dump(path)
    except ValueError as exc:  # not a dump: one line, as for a missing directory
        raise FileNotFoundError(str(exc)) from None
    return path, list(iter_events_in_time_order(dump))


@eval_app.command("ranking")
@friendly
def eval_ranking(
        stackexchange: Optional[Path] = typer.Option(None, "--stackexchange", help=DUMP_HELP),
        warmup_days: float = typer.Option(30.0, "--warmup-days", min=0.0,
                                          help="Days from the first event that are replayed, not evaluated."),
        days: Optional[float] = typer.Option(None, "--days", min=1.0,
                                             help="Only the first DAYS of the history (default: all)."),
        plot: Path = typer.Option(Path("docs/figures/ranking-ndcg.png"), "--plot",
                                  help="Where to save the NDCG@10-over-time plot (PNG)."),
        as_json: bool = typer.Option(True, "--json/--no-json",
                                     help="Print the JSON report on stdout (default; --no-json: table only)."),
        torch_threads: int = typer.Option(1, "--torch-threads", min=1,
                                          help="Intra-op threads for clip_ai's models (one is fastest "
                                               "for batch-of-one inference on a small shared machine)."),
        collaborative: bool = typer.Option(False, "--collaborative/--no-collaborative",
                                           help="Run feed_ranker with its collaborative candidates, "
                                                "retrained from the log before each moment as the "
                                                "baselines are (default: as shipped, none loaded)."),
) -> None:
    """Replay a Stack Exchange history through the live agents (clip_ai, publisher, user_profiler,
    feed_fanout, feed_ranker; in-process, no servers) and score each engagement's post in the
    user's feed as materialized just before it, against reverse-chronological, most-popular, ALS
    and item-kNN baselines: NDCG@10, hit@10/50, MRR, cold-start split, coverage, author Gini.
    Prints one JSON object."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.bench.ranking import run_ranking_eval
    from streams.demo.sources.stackexchange import ANONYMOUS_USER_ID

    path, history = _history(stackexchange)
    import torch

    torch.set_num_threads(torch_threads)
    with Progress(TextColumn("[bold]replaying[/]"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        err_console.print("loading clip_ai's models (seconds)...")
        task = bar.add_task("events", total=len(history))
        report = run_ranking_eval(
            history, settings(), anonymous_user_id=ANONYMOUS_USER_ID, dataset=path.name,
            warmup_days=warmup_days, days=days, plot=plot, collaborative=collaborative,
            progress=lambda done, total: bar.update(task, completed=done) if done % 50 == 0 or done == total else None)
    _print_table(report)
    if as_json:
        print(json.dumps(report, indent=2))


def _print_table(report: dict) -> None:
    from rich.table import Table

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    table = Table(title=f"{report['dataset']}: {report['events_evaluated']} events "
                        f"({report['cold_start_events']} cold start), {report['seconds']} s")
    for col in ("ranker", "NDCG@10", "hit@10", "hit@50", "MRR", "cold NDCG@10", "warm NDCG@10",
                "coverage@10", "author Gini"):
        table.add_column(col, justify="left" if col == "ranker" else "right")
    for name, r in report["rankers"].items():
        table.add_row(name, f(r["ndcg10"]), f(r["hit10"]), f(r["hit50"]), f(r["mrr"]),
                      f(r["cold_start"]["ndcg10"]), f(r["warm"]["ndcg10"]),
                      f(r["catalogue_coverage10"]), f(r["author_gini10"]))
    err_console.print(table)
    g = report["goals"]
    err_console.print(f"goals: vs best simple {f(g['ndcg10_vs_best_simple'])} (1.2x met: {g['met_1_2x']}), "
                      f"vs best library {f(g['ndcg10_vs_best_library'])} (met: {g['met_library']}), "
                      f"cold start {f(g['cold_start_vs_best_baseline'])} (met: {g['met_cold_start']})",
                      highlight=False)


@eval_app.command("ranking-fit")
@friendly
def eval_ranking_fit(
        stackexchange: Optional[Path] = typer.Option(None, "--stackexchange", help=DUMP_HELP),
        warmup_days: float = typer.Option(30.0, "--warmup-days", min=1.0,
                                          help="Days from the first event whose engagements choose the weights."),
        top: int = typer.Option(10, "--top", min=1, help="How many configurations to list."),
) -> None:
    """Grid-search feed_ranker's relevance trade-offs (novelty half-life; interest, reply,
    hashtag, top-level and following weights relative to novelty) on the warm-up period's
    engagements only, with offline stand-ins for the signals (streams/bench/ranking_fit.py).
    Prints one JSON object: the best configurations by warm-up NDCG@10, each with its
    evaluation-period NDCG@10 for transparency, and newest-first on both periods."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from models.clip.text import MiniLM
    from streams.bench.ranking_fit import build_cases, fit
    from streams.demo.sources.stackexchange import ANONYMOUS_USER_ID

    path, history = _history(stackexchange)
    model = MiniLM()
    with Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        def encode(texts: list[str]):
            import numpy as np

            task = bar.add_task("embedding posts", total=len(texts))
            out = []
            for i in range(0, len(texts), 64):
                out.append(model.encode(texts[i:i + 64]))
                bar.update(task, completed=min(i + 64, len(texts)))
            return np.concatenate(out) if out else np.zeros((0, 384))

        cases = build_cases(history, encode, warmup_days, ANONYMOUS_USER_ID)
        task = bar.add_task("grid", total=None)
        report = fit(cases, top=top, progress=lambda done, total: bar.update(task, completed=done, total=total))
    report["dataset"] = path.name
    print(json.dumps(report, indent=2))


@train_app.command("collaborative")
@friendly
def train_collaborative(
        version: Optional[str] = typer.Option(None, "--version",
                                              help="Version name (default cf-<UTC timestamp>)."),
        until: Optional[str] = typer.Option(None, "--until",
                                            help="Only engagements at or before this time (ISO 8601 "
                                                 "or epoch ms; default: the whole log)."),
        k: int = typer.Option(50, "--k", min=1, help="Neighbours kept per post.")) -> None:
    """Train the item-kNN of feed_ranker's collaborative candidate source from the log
    (interactions and posts-published read back to their current ends) into the model registry
    (PULSE_HOME/models/collaborative/VERSION), with a leave-latest-out hit@10 against the
    most-engaged posts; prints the metrics as one JSON object. Load it with
    PULSE_COLLABORATIVE_MODEL=VERSION."""
    import shlex
    import time as _time

    from models.ranking.collaborative import FAMILY, resolve, train
    from replay.rebuild import parse_time_ms
    from replay.training import engagement_pairs

    version = version or _time.strftime("cf-%Y%m%d-%H%M%S", _time.gmtime())
    if "/" in version or version.startswith("."):
        raise typer.BadParameter("a version is a plain name", param_hint="'--version'")
    until_ms = parse_time_ms(until, "--until") if until else None
    s = settings()
    args = ["pulse", "train", "collaborative", "--version", version, "--k", str(k)]
    if until:
        args += ["--until", until]
    with err_console.status("reading engagements from the log"):
        data = engagement_pairs(s, until_ms=until_ms)
    with err_console.status(f"training {FAMILY} {version} on {len(data['rows'])} engagements"):
        model, metrics = train(data["rows"], version, k=k)
        directory = resolve(s.home, version)
        model.save(directory, command=" ".join(shlex.quote(a) for a in args), metrics=metrics,
                   training_data=data["training_data"])
    err_console.print(f"wrote {directory}; load it with PULSE_COLLABORATIVE_MODEL={version}")
    print(json.dumps({"version": version, "directory": str(directory), **metrics}, indent=2))
