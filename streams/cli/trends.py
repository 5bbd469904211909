"""``pulse trends`` (the current trends, from the Cassandra views through
``streams.query.trends``) and ``pulse eval trends`` (burst detection on a real tag stream with
injected bursts, :mod:`streams.bench.trends`). The eval's JSON goes to stdout; progress and a
summary to stderr."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streams.cli.common import app, console, err_console, eval_app, friendly, register_user_errors, settings
from streams.cli.tables import RecordTable



register_user_errors("streams.query.trends:UnknownKind", "streams.bench.trends:EvalInputError",
                     "streams.query.hashtags:UnknownPost")

SHARED_DUMP = Path("../shared/data/stackexchange-quantumcomputing")


@app.command()
@friendly
def trends(kind: Optional[str] = typer.Option(None, "--kind", help="hashtag or category (default: both)."),
           limit: int = typer.Option(10, "--limit", min=1, max=200, help="Trends per kind (1-200)."),
           ended: bool = typer.Option(False, "--ended", help="Also list trends that have ended."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Trending hashtags and categories now: mentions in the window against the baseline's
    expectation, the burst score, and the most mentioned hashtags of the window."""
    from streams.query.trends import read_heavy_hitters, read_trends

    rows = read_trends(settings(), kind, limit=limit, include_ended=ended)
    top = read_heavy_hitters(settings(), (kind or "hashtag"), limit=limit)
    if as_json:
        print(json.dumps({"trends": [r.as_dict() for r in rows],
                          "heavy_hitters": [{"subject": s, "estimate": n} for s, n in top]}, indent=2))
        return
    if not rows:
        console.print("nothing is trending (trend_detector has written no current trend)")
    else:
        t = RecordTable(f"trends ({len(rows)})")
        for col in ("#", "kind", "subject", "state", "count", "expected", "z", "since"):
            t.add_column(col)
        for r in rows:
            since = f"{r.started_at:%Y-%m-%d %H:%M}" if r.started_at else "-"
            t.add_row(str(r.rank), r.subject_kind.lower(), r.subject, r.state.lower(), str(r.count),
                      f"{r.baseline_count:.1f}", f"{r.burst_score:.2f}", since,
                      details=[("posts", ", ".join(r.sample_post_ids))] if r.sample_post_ids else [])
        console.print(t)
    if top:
        console.print("most mentioned now: " + ", ".join(f"{s} ({n})" for s, n in top), highlight=False)


@app.command()
@friendly
def hashtags(post_id: str = typer.Argument(..., help="The post's id (enriched by clip_ai)."),
             limit: int = typer.Option(5, "--limit", min=1, max=50, help="Hashtags to suggest (1-50)."),
             max_trending: int = typer.Option(2, "--max-trending", min=0, max=50,
                                              help="At most this many trending hashtags first."),
             min_similarity: float = typer.Option(0.5, "--min-similarity", min=-1.0, max=1.0,
                                                  help="Cosine a trend's posts must have with the post "
                                                       "(pulse eval hashtags measures the cut)."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Hashtag suggestions for a post: open trends whose posts are like this one first, then
    CLIP AI's suggestions from the post's content; its own hashtags never.

    With the embedded vector engine, a running worker holds the collection: stop it first, or
    use a Qdrant server (PULSE_QDRANT_URL)."""
    from streams.query.hashtags import suggest_hashtags
    from streams.query.read_side import get_read_side

    rs = get_read_side(settings())
    rows = suggest_hashtags(rs, rs.vectors, post_id, limit=limit, max_trending=max_trending,
                            min_similarity=min_similarity)
    if as_json:
        print(json.dumps({"post_id": post_id, "hashtags": [r.as_dict() for r in rows]}, indent=2))
        return
    if not rows:
        console.print(f"no hashtag to suggest for {post_id} (no fitting trend, no CLIP AI suggestion)")
        return
    t = RecordTable(f"hashtags for {post_id}")
    for col in ("#", "hashtag", "source", "similarity", "burst z", "content rank"):
        t.add_column(col)
    for i, r in enumerate(rows, 1):
        t.add_row(str(i), "#" + r.tag, r.source, f"{r.similarity:.2f}" if r.similarity is not None else "-",
                  f"{r.burst_score:.1f}" if r.burst_score is not None else "-",
                  str(r.content_rank) if r.content_rank is not None else "-")
    console.print(t)


@eval_app.command("hashtags")
@friendly
def eval_hashtags(
        stackexchange: Optional[Path] = typer.Option(None, "--stackexchange",
                                                     help="Stack Exchange dump directory (default "
                                                          "../shared/data/stackexchange-quantumcomputing)."),
        posts: int = typer.Option(800, "--posts", min=10, help="First tagged posts to use."),
        seed: int = typer.Option(7, "--seed", help="Seed of the random samples.")) -> None:
    """How often the hashtag suggestions' similarity cut keeps a trend about the post's subject
    (the centroid of other posts with the post's tag) and suggests an unrelated one (another
    tag's posts), per cut; one JSON object."""
    from models.clip.text import MiniLM
    from streams.bench.hashtags import run_hashtags_eval
    from streams.cli.ranking import _history
    from streams.query.hashtags import MIN_SIMILARITY

    path, history = _history(stackexchange or (SHARED_DUMP if SHARED_DUMP.is_dir() else None))
    uploads = [r for event_type, r in history if event_type == "upload"]
    with err_console.status("eval hashtags: embedding posts with MiniLM"):
        report = run_hashtags_eval(uploads, MiniLM().encode, dataset=path.name, posts=posts, seed=seed,
                                   default_cut=MIN_SIMILARITY)
    print(json.dumps(report, indent=2))


@eval_app.command("trends")
@friendly
def eval_trends(
        stackexchange: Optional[Path] = typer.Option(None, "--stackexchange",
                                                     help="Stack Exchange dump directory (default "
                                                          "../shared/data/stackexchange-quantumcomputing)."),
        window_days: float = typer.Option(14.0, "--window-days", min=0.01, help="Window length (days)."),
        window_slots: int = typer.Option(28, "--window-slots", min=1, help="Slots per window (the window slides by one)."),
        half_life_days: float = typer.Option(28.0, "--half-life-days", min=0.01, help="Half-life of the baseline (days)."),
        bias: float = typer.Option(1.0, "--bias", min=0.0, help="SigniTrend bias (mentions per window)."),
        z_start: float = typer.Option(1.5, "--z-start", help="Burst score at which a trend starts "
                                                             "(1.5: chosen on --seed 1, reported on 14)."),
        z_end: float = typer.Option(1.0, "--z-end", help="Burst score below which a trend ends."),
        min_count: int = typer.Option(5, "--min-count", min=1, help="Mentions in the window a trend needs."),
        warmup_windows: int = typer.Option(2, "--warmup-windows", min=0, help="Windows before any trend may start."),
        warmup_days: float = typer.Option(28.0, "--warmup-days", min=0.0, help="Days replayed but not scored."),
        sizes: str = typer.Option("2,3,5", "--sizes", help="Burst sizes, multiples of each tag's own rate."),
        trials: int = typer.Option(20, "--trials", min=1, help="Injection runs per burst size."),
        burst_windows: float = typer.Option(1.0, "--burst-windows", min=0.1, help="Burst length (windows)."),
        min_rate: float = typer.Option(0.4, "--min-rate", min=0.0, help="Mentions per day a tag needs to get bursts."),
        seed: int = typer.Option(14, "--seed", help="Seed of the injected bursts."),
) -> None:
    """Inject bursts at known times and sizes into a Stack Exchange tag stream, run
    trend_detector (its own process functions, in process) and a fixed-threshold count
    detector on it, and report recall and delay per burst size and false alarms per day on the
    real background. Prints one JSON object."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from models.trends.burst import TrendParams
    from streams.bench.trends import run_trends_eval
    from streams.demo.sources.stackexchange import load_dump

    path = stackexchange if stackexchange is not None else SHARED_DUMP
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such Stack Exchange dump directory (give --stackexchange DIR)")
    try:
        multiples = [float(x) for x in sizes.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{sizes!r}: give comma-separated numbers, e.g. 2,3,5",
                                 param_hint="--sizes") from None
    slot_ms = int(window_days * 86_400_000 / window_slots)
    params = TrendParams(slot_ms=slot_ms, window_slots=window_slots,
                         half_life_ms=int(half_life_days * 86_400_000), bias=bias, z_start=z_start,
                         z_end=z_end, min_count=min_count, warmup_windows=warmup_windows)
    try:
        dump = load_dump(path)
    except ValueError as exc:
        raise FileNotFoundError(str(exc)) from None
    with Progress(TextColumn("[bold]eval trends[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("replaying", total=1 + len(multiples) * trials)
        report = run_trends_eval(dump.uploads, dataset=path.name, params=params, warmup_days=warmup_days,
                                 sizes=multiples, trials=trials, burst_windows=burst_windows,
                                 min_rate=min_rate, seed=seed,
                                 progress=lambda done, total, what: bar.update(task, completed=done,
                                                                               description=what))
    g = report["goals"]
    for size, r in report["bursts"].items():
        d, b = r["trend_detector"], r["fixed_threshold"]
        err_console.print(f"{size}: trend_detector recall {d['recall']} (delay {d['median_delay_windows']} windows) | "
                          f"fixed threshold recall {b['recall']} (all bursts {b['recall_all']})", highlight=False)
    err_console.print(f"goals: recall 3x {g['recall_3x']} (met: {g['met_recall_3x']}), median delay "
                      f"{g['median_delay_windows_3x']} windows (met: {g['met_delay']}), false alarms/day "
                      f"{g['false_alarms_per_day']} (met: {g['met_false_alarms']})", highlight=False)
    print(json.dumps(report, indent=2))
