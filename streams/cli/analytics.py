"""``pulse creator-stats`` (a creator's reach, engagement and posts' predicted virality, from the
Cassandra view through ``streams.query.analytics``) and ``pulse eval analytics`` (the first
day's predicted virality against the first day's raw votes on a Stack Exchange history, and the
reach sketch's error, :mod:`streams.bench.analytics`). The eval's JSON goes to stdout; progress
and a summary to stderr."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streams.cli.common import app, console, err_console, eval_app, friendly, register_user_errors, settings
from streams.cli.tables import RecordTable

SHARED_DUMP = Path("../shared/data/stackexchange-quantumcomputing")


register_user_errors("streams.query.analytics:UnknownCreator", "streams.query.analytics:UnknownSort",
                     "streams.bench.analytics:EvalInputError")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


@app.command("creator-stats")
@friendly
def creator_stats(creator_id: str = typer.Argument(..., help="The creator's user id."),
                  sort: str = typer.Option("virality", "--sort", help="Order of the posts: virality, "
                                                                       "reach, likes or recent."),
                  limit: int = typer.Option(10, "--limit", min=1, max=500, help="Posts listed (1-500)."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """How CREATOR_ID's posts do: reach (distinct users, a HyperLogLog estimate), views, likes,
    comments, shares, replies, hides, reports, engagement rate, the meaningful-engagement ratio,
    and each post's predicted virality (the share of recent posts it is predicted to beat)."""
    from streams.query.analytics import read_creator_stats

    stats = read_creator_stats(settings(), creator_id, sort=sort, limit=limit)
    if as_json:
        print(json.dumps(stats.as_dict(), indent=2))
        return
    t = RecordTable(f"creator {creator_id}")
    for col in ("post", "reach", "views", "likes", "comm.", "shares", "eng.", "virality"):
        t.add_column(col, justify="left" if col == "post" else "right")
    rows = ([("all posts", stats.totals)] if stats.totals else []) + [(p.post_id, p) for p in stats.posts]
    for label, r in rows:
        details = [("", f"replies {r.replies}, hides {r.hides}, reports {r.reports}, "
                        f"meaningful {_pct(r.meaningful_engagement_ratio)}"
                        + (f", {r.posts} posts" if r.posts is not None else "")
                        + (f", published {r.published_at:%Y-%m-%d %H:%M}" if r.published_at else "")
                        + (f", predicted {r.predicted_engagement:.1f} endorsements"
                           if r.predicted_engagement is not None else ""))]
        t.add_row(label, str(r.reach), str(r.views), str(r.likes), str(r.comments), str(r.shares),
                  _pct(r.engagement_rate), _pct(r.predicted_virality), details=details)
    console.print(t)
    console.print("eng. = engaged users / reach; virality = share of recently matured posts "
                  "below its predicted engagement", highlight=False)


@eval_app.command("analytics")
@friendly
def eval_analytics(
        stackexchange: Optional[Path] = typer.Option(None, "--stackexchange",
                                                     help="Stack Exchange dump directory (default "
                                                          "../shared/data/stackexchange-quantumcomputing)."),
        horizon_h: float = typer.Option(24.0, "--horizon-h", min=0.1, help="Early horizon (hours): the first day."),
        maturity_h: float = typer.Option(168.0, "--maturity-h", min=0.1,
                                         help="Age (hours) at which the regressor learns a post."),
        lg_k: int = typer.Option(12, "--lg-k", min=4, max=21, help="HyperLogLog size (log2 of registers)."),
        warmup_days: float = typer.Option(45.0, "--warmup-days", min=0.0,
                                          help="Days of posts replayed but not scored (the model's warm-up)."),
        min_reach: int = typer.Option(10, "--min-reach", min=1,
                                      help="Distinct users a post or creator needs for the reach error."),
        copies: int = typer.Option(10, "--copies", min=1,
                                   help="Replays of the interactions with renamed users for the reach "
                                        "error at scale (1: none)."),
) -> None:
    """Replay a Stack Exchange history through analytics_signals, post_analytics and
    creator_analytics (their own code, in process) and report Spearman's correlation of the
    first day's predicted virality with the posts' final score, against the first day's raw vote
    count, and the HyperLogLog reach error against the exact count. Prints one JSON object."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.bench.analytics import run_analytics_eval
    from streams.demo.sources.stackexchange import early_votes_and_scores, iter_events_in_time_order, load_dump

    path = stackexchange if stackexchange is not None else SHARED_DUMP
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such Stack Exchange dump directory (give --stackexchange DIR)")
    try:
        dump = load_dump(path)
        truth = early_votes_and_scores(path, int(horizon_h * 3_600_000))
    except ValueError as exc:
        raise FileNotFoundError(str(exc)) from None
    history = list(iter_events_in_time_order(dump))
    with Progress(TextColumn("[bold]eval analytics[/] {task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("replaying", total=len(history))
        report = run_analytics_eval(
            history, truth, settings(), dataset=path.name, horizon_h=horizon_h, maturity_h=maturity_h,
            lg_k=lg_k, warmup_days=warmup_days, min_reach=min_reach, copies=copies,
            progress=lambda what, done, total: bar.update(task, completed=done, total=total, description=what))
    g, s = report["goals"], report["spearman_scored"]
    err_console.print(f"Spearman with the final score over {s['posts']} posts: predicted virality "
                      f"{s['predicted_virality']} | first day's raw votes {s['first_day_raw_votes']} | "
                      f"net votes {s['first_day_net_votes']}", highlight=False)
    err_console.print(f"goals: above the raw-vote baseline {g['met_spearman_above_baseline']}; reach "
                      f"error {g['reach_mean_relative_error_max']} under 2 % {g['met_reach_error_under_2pct']}",
                      highlight=False)
    print(json.dumps(report, indent=2))
