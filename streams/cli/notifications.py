"""``pulse notifications USER_ID`` (a user's notification decisions, from the Cassandra view
through ``streams.query.notifications``) and ``pulse eval notifications`` (a simulated population
through notification_generator against send-everything and a fixed daily cap, and off-policy
estimates, :mod:`streams.bench.notifications`). The eval's JSON goes to stdout; progress and a
summary to stderr."""
from __future__ import annotations

import json

import typer

from streams.cli.common import app, console, err_console, eval_app, friendly, settings
from streams.cli.tables import RecordTable


@app.command()
@friendly
def notifications(user_id: str = typer.Argument(..., help="The recipient's user id."),
                  limit: int = typer.Option(20, "--limit", min=1, max=500, help="Newest notifications to show (1-500)."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """A user's notifications, newest first: what notification_generator sent or held for a
    digest, with the probability the policy gave that action and what the user did with it."""
    from streams.query.notifications import read_notifications

    rows = read_notifications(settings(), user_id, limit=limit)
    if as_json:
        print(json.dumps({"user_id": user_id, "notifications": [r.as_dict() for r in rows]}, indent=2))
        return
    if not rows:
        console.print(f"no notifications for {user_id} (notification_generator has written none)")
        return
    t = RecordTable(f"notifications of {user_id} ({len(rows)})")
    for col in ("when (UTC)", "type", "action", "p", "expected", "status", "title"):
        t.add_column(col)
    for r in rows:
        t.add_row(f"{r.sent_at:%Y-%m-%d %H:%M}" if r.sent_at else "-", r.type.lower(), (r.action or "-").lower(),
                  f"{r.propensity:.3f}" if r.propensity is not None else "-",
                  f"{r.expected_reward:.2f}" if r.expected_reward is not None else "-",
                  (r.status or "-").lower(), r.title or "")
    console.print(t)


@eval_app.command("notifications")
@friendly
def eval_notifications(
        users: int = typer.Option(300, "--users", min=1, help="Simulated users."),
        days: int = typer.Option(14, "--days", min=1, help="Simulated days."),
        seed: int = typer.Option(7, "--seed", help="Seed of the population, its candidates and reactions."),
) -> None:
    """Feed a simulated population (users who want some notification types and not others)
    through notification_generator, send-everything and a fixed daily cap on the same
    candidates; report the meaningful ratio and meaningful notifications of each, and IPS,
    self-normalised IPS and doubly robust estimates of a candidate policy from Pulse's logged
    propensities against the simulator's truth. Prints one JSON object."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from streams.bench.notifications import run_notifications_eval

    with Progress(TextColumn("[bold]eval notifications[/] candidates decided"), BarColumn(), MofNCompleteColumn(),
                  TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task("deciding", total=None)
        report = run_notifications_eval(users=users, days=days, seed=seed,
                                        progress=lambda done, total: bar.update(task, completed=done, total=total))
    p, g, o = report["policies"], report["goals"], report["off_policy"]
    for name in ("pulse", "send_everything", "fixed_cap"):
        r = p[name]
        err_console.print(f"{name}: {r['notifications']} notifications, {r['meaningful_notifications']} meaningful "
                          f"(ratio {r['meaningful_ratio']}), {r['meaningful_items']} meaningful items", highlight=False)
    err_console.print(f"off-policy: truth {o['truth']} | ips {o['estimates']['ips']} snips {o['estimates']['snips']} "
                      f"dr {o['estimates']['dr']}", highlight=False)
    err_console.print(f"goals: ratio {g['ratio_vs_send_everything']}x (met: {g['met_ratio_2x']}), meaningful "
                      f"items kept {g['meaningful_items_kept']} (met: {g['met_kept_80pct']}; counting a digest "
                      f"once {g['meaningful_notifications_kept']}), snips error {g['snips_relative_error']} "
                      f"(met: {g['met_snips_10pct']})", highlight=False)
    print(json.dumps(report, indent=2))
