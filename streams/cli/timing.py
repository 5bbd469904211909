"""``pulse golden-moment`` (a creator's best posting windows, from the Cassandra view through
``streams.query.timing``) and ``pulse eval timing`` (golden moments against the global top hours
on a Stack Exchange history, :mod:`streams.bench.timing`). The eval's JSON goes to stdout;
progress and a summary to stderr."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streams.cli.common import app, console, err_console, eval_app, friendly, register_user_errors, settings

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class NoHourMap(ValueError):
    """The creator's rows carry no hourly map (a table made before the map was a static column,
    read without its FLASH row)."""


register_user_errors("streams.query.timing:UnknownContentType", "streams.query.timing:UnknownCreator",
                     "streams.bench.timing:EvalInputError", NoHourMap)


@app.command("golden-moment")
@friendly
def golden_moment(creator_id: str = typer.Argument(..., help="The creator's user id."),
                  content_type: Optional[str] = typer.Option(None, "--content-type",
                                                             help="flash, memory or forever (default: all three)."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                  plot: Optional[Path] = typer.Option(None, "--plot",
                                                      help="Also draw the week as heat maps to this PNG: the "
                                                           "audience's activity and each content type's score "
                                                           "per hour, the recommended windows numbered.")) -> None:
    """When CREATOR_ID should post: the best hours of the week (UTC) per content type, the
    expected share of the audience's activity met, the audience size and how much of the
    estimate is the population prior."""
    from rich.table import Table

    from streams.query.timing import read_golden_moments

    rows = read_golden_moments(settings(), creator_id, content_type)
    if plot is not None:
        golden_moment_heatmaps(rows, plot)
        err_console.print(f"heat maps of {creator_id}'s week written to {plot}")
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    t = Table(title=f"golden moments of {creator_id}")
    for col in ("type", "windows (UTC)", "next", "audience", "prior weight"):
        t.add_column(col)
    for r in rows:
        windows = ", ".join(f"{DAYS[d]} {h:02d}:00 ({s:.3f})" for d, h, s in r.windows)
        nxt = f"{r.next_window_start:%Y-%m-%d %H:%M}" if r.next_window_start else "-"
        t.add_row(r.content_type.lower(), windows, nxt, str(r.audience_size), f"{r.prior_weight:.2f}")
    console.print(t)


def golden_moment_heatmaps(rows, path: Path) -> Path:
    """Draw ``rows`` (:class:`streams.query.timing.GoldenMomentRow` of one creator) as 7 x 24
    heat maps (days down, UTC hours across) into the PNG ``path``: the audience's share of
    activity per hour (the stored ``hour_map``), then each row's content type's score per hour
    (:func:`models.timing.windows.all_window_scores`: the share of the audience's activity a
    post made then meets while feeds still place it), its recommended windows numbered 1, 2, 3
    as stored. Values in percent. Returns ``path``.

    Raises :class:`NoHourMap` when no row has a map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from models.timing import windows as W

    hour_map = next((r.hour_map for r in rows if r.hour_map), None)
    if hour_map is None or len(hour_map) != 7 * 24:
        raise NoHourMap("no hourly map is stored for this creator (a golden_moments table made before the "
                        "map was a static column keeps it on the FLASH row only: read all content types, or "
                        "drop the table and replay)")
    scores = W.all_window_scores(np.asarray(hour_map, dtype=np.float64))
    panels = [("audience activity", scores[W.HOURLY], [])]
    panels += [(f"{r.content_type.lower()}: score of a post made then", scores[r.content_type], r.windows)
               for r in rows]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.3 * len(panels)), squeeze=False)
    for ax, (title, values, marks) in zip(axes[:, 0], panels):
        im = ax.imshow(values.reshape(7, 24) * 100, aspect="auto", cmap="viridis")
        for rank, (d, h, _) in enumerate(marks, 1):
            ax.text(h, d, str(rank), ha="center", va="center", color="white", fontweight="bold",
                    bbox={"boxstyle": "circle,pad=0.2", "facecolor": "crimson", "linewidth": 0})
        ax.set_yticks(range(7), DAYS)
        ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
        ax.set_title(title, loc="left", fontsize=10)
        fig.colorbar(im, ax=ax, label="% per hour", fraction=0.03, pad=0.01)
    axes[-1, 0].set_xlabel("hour of the day (UTC)")
    first = rows[0]
    fig.suptitle(f"golden moments of {first.creator_id}: audience {first.audience_size}, "
                 f"population prior weight {first.prior_weight:.2f}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@eval_app.command("timing")
@friendly
def eval_timing(
        stackexchange: Optional[Path] = typer.Option(None, "--stackexchange",
                                                     help="Stack Exchange dump directory (default "
                                                          "../shared/data/stackexchange-quantumcomputing)."),
        split: float = typer.Option(0.6, "--split", min=0.05, max=0.95,
                                    help="Where the time split falls, as a fraction of the history's span."),
        prior_strength: Optional[float] = typer.Option(None, "--prior-strength", min=0.0,
                                                       help="Population prior strength (default: the agent's)."),
        smoothing: Optional[float] = typer.Option(None, "--smoothing", min=0.0, max=1.0,
                                                  help="Day x hour smoothing of the audience map (default: the agent's)."),
        hour_bandwidth: Optional[int] = typer.Option(None, "--hour-bandwidth", min=0, max=11,
                                                     help="Half-width in hours of the map's smoothing over adjacent "
                                                          "hours (default: the agent's, 1)."),
        truth_until: Optional[float] = typer.Option(None, "--truth-until", min=0.05, max=1.0,
                                                    help="End the truth here, a fraction of the span after --split "
                                                         "(development runs that never read the reported period; "
                                                         "default: the end of the history)."),
        activity_half_life_days: Optional[float] = typer.Option(
            None, "--activity-half-life-days", min=0.1,
            help="user_profiler's active-hours half-life for this run (default: the setting, "
                 "PULSE_PROFILE_ACTIVITY_HALF_LIFE_DAYS, 90 days)."),
) -> None:
    """Replay a Stack Exchange history before a time split through user_profiler,
    timing_audience and timing_optimizer (in process), then score each creator's predicted
    top-3 hours of the week on the audience's real activity after the split, against the global
    top-3 hours; small audiences (under 10) apart. Prints one JSON object."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from streams.bench.timing import run_timing_eval
    from streams.cli.ranking import _history

    path, history = _history(stackexchange)
    s = settings()
    if activity_half_life_days is not None:
        s = s.with_(profile_activity_half_life_days=activity_half_life_days)
    with Progress(TextColumn("[bold]eval timing[/] replaying before the split"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task("events", total=None)
        report = run_timing_eval(
            history, s, split=split, dataset=path.name, prior_strength=prior_strength, smoothing=smoothing,
            hour_bandwidth=hour_bandwidth, truth_until=truth_until,
            progress=lambda done, total: bar.update(task, completed=done, total=total)
            if done % 100 == 0 or done == total else None)
    g = report["goals"]
    for name in ("overall", "small_audiences", "large_audiences"):
        h = report[name].get("hourly")
        if h:
            err_console.print(f"{name} ({report[name]['creators']} creators): golden moment {h['golden_moment']} "
                              f"vs global top-3 {h['global_top3']} (x{h['ratio']})", highlight=False)
    err_console.print(f"goals: overall x{g['ratio_overall']} (1.25 met: {g['met_overall']}); small audiences "
                      f"{g['small_golden_moment']} vs {g['small_global_top3']} (met: {g['met_small']})",
                      highlight=False)
    print(json.dumps(report, indent=2))
