"""``pulse replay``: rebuild views through the live code path, verify a rebuild against the live
views and topics, and point readers at a rebuilt keyspace (``docs/replay.md``)."""
from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from streams.cli.common import app, console, err_console, friendly, register_user_errors, settings
from streams.cli.core import _FROM_HELP, _TO_HELP, _time_range

replay_app = typer.Typer(help="Rebuild views by replaying the log; verify; swap keyspaces.",
                         no_args_is_help=True)
app.add_typer(replay_app, name="replay")


class VerifyFailed(RuntimeError):
    """``--verify`` found differences (they are printed above the message)."""


register_user_errors(VerifyFailed, "replay.rebuild:TimeRangeError", "replay.compare:CompareError")


@replay_app.command("rebuild")
@friendly
def rebuild(agent_names: Optional[str] = typer.Option(None, "--agents",
                                                      help="Comma-separated agents (default: all)."),
            into: Optional[str] = typer.Option(
                None, "--into", help="Rebuild into this fresh keyspace (and its own vector "
                                     "collections, <KEYSPACE>__<name>) instead of the live views."),
            verify: bool = typer.Option(False, "--verify", help="Compare the rebuild with the live "
                                        "views, vector points and derived topics; print every "
                                        "difference; exit 1 if there is one (needs --into)."),
            start: Optional[str] = typer.Option(None, "--from", help=_FROM_HELP),
            end: Optional[str] = typer.Option(None, "--to", help=_TO_HELP),
            emit: bool = typer.Option(False, "--emit", help="Also publish derived events and dead "
                                      "letters (default: only count them, so nothing is "
                                      "duplicated)."),
            as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Replay the agents' source topics through the worker's own code (state rebuilt from the
    log, side inputs as of each event's time) and write their views: in place (idempotent), or
    into a fresh keyspace with --into, which --verify then compares with the live run."""
    from rich.progress import Progress

    from agents.registry import select
    from replay.rebuild import rebuild_views

    if verify and not into:
        raise typer.BadParameter("--verify compares a rebuild with the live views: add --into "
                                 "KEYSPACE", param_hint="'--verify'")
    start_ms, end_ms = _time_range(start, end)
    names = [spec.name for spec in select(agent_names)]  # unknown names fail before any output
    s = settings()
    if into:
        _check_fresh(s, into)
    with Progress(console=err_console) as bar:
        task = bar.add_task("replaying", total=None)
        r = rebuild_views(s, names, start_ms=start_ms, end_ms=end_ms, emit=emit, into=into,
                          collect=verify,
                          on_progress=lambda done, total: bar.update(task, completed=done,
                                                                     total=total))
    report = None
    if verify:
        from replay.verify import verify_rebuild

        with err_console.status("verifying") as st:
            report = verify_rebuild(s, r, on_step=lambda m: st.update(f"verifying: {m}"))
    if as_json:
        out = {k: v for k, v in r.items() if k not in ("emitted", "written")}
        if report is not None:
            out["verify"] = report.as_dict()
        print(json.dumps(out, indent=2))
    else:
        _print_summary(r, emit)
        if report is not None:
            _print_report(report)
    for d in r["dead_letter_list"]:
        err_console.print(f"[yellow]dead letter[/] {d['topic']}[{d['partition']}]@{d['offset']}: "
                          f"{d['reason']}", highlight=False)
    if report is not None and report.differences:
        raise VerifyFailed(f"{len(report.differences)} difference(s) between the rebuild in "
                           f"{r['keyspace']} and the live run")


def _check_fresh(s, into: str) -> None:
    from streams.query.pointer import keyspace_exists, keyspace_name
    from streams.stores.cassandra import connect

    ks = keyspace_name(into)
    if ks == keyspace_name(s.cassandra_keyspace):
        raise typer.BadParameter(f"{into} is the base keyspace: rebuild into a new one",
                                 param_hint="'--into'")
    cluster, session = connect(s)
    try:
        if keyspace_exists(session, ks):
            raise typer.BadParameter(f"keyspace {ks} already exists: choose a new name, or drop "
                                     f"it first with `pulse replay drop {ks}`",
                                     param_hint="'--into'")
    finally:
        cluster.shutdown()


def _print_summary(r: dict, emit: bool) -> None:
    t = Table(title=f"replay into {r['keyspace']}: {', '.join(r['agents'])}")
    t.add_column("")
    t.add_column("count", justify="right")
    for topic, n in r["topics"].items():
        t.add_row(f"events from {topic}", str(n))
    t.add_row("view rows and points written", str(r["effects"]))
    t.add_row("derived events published" if emit else "derived events not re-published",
              str(r["emits_published"] if emit else r["emits_skipped"]))
    t.add_row("dead letters" + (" (published)" if emit else " (not re-published)"),
              str(r["dead_letters"]))
    t.add_row("seconds", f"{r['seconds']:.1f}")
    t.add_row("events/s", str(r["events_per_s"]))
    console.print(t)


def _print_report(report) -> None:
    for kind, counts in (("derived events", report.events), ("view rows", report.rows),
                         ("vector points", report.points)):
        for where, n in counts.items():
            console.print(f"verified {n} {kind} of {where}", highlight=False)
    for what, n in report.rechecked.items():
        console.print(f"rebuilt twice and compared {n} {what}", highlight=False)
    for note in report.notes:
        console.print(f"[yellow]note[/] {note}", highlight=False)
    div = report.as_dict()
    if div["live_divergence"]:
        console.print(f"[yellow]live divergence[/] (order-sensitive agents, not errors): "
                      + ", ".join(f"{n} {w}" for w, n in div["live_divergence_by_output"].items()),
                      highlight=False)
        for line in div["live_divergence_examples"][:5]:
            console.print(f"  e.g. {line}", highlight=False)
    for d in report.differences:  # every difference, one line each
        console.print(f"[red]differs[/] {d.line()}", highlight=False)
    if not report.differences:
        console.print("[green]0 differences[/]: the rebuild equals the live run"
                      + (" (and itself, for order-sensitive agents)" if report.rechecked else ""))


@replay_app.command("compare")
@friendly
def compare(agent: str = typer.Option(..., "--agent", help="The agent whose model versions to compare "
                                      "(content_guard)."),
            versions: str = typer.Option(..., "--versions", help="Two model versions, comma-separated: "
                                         "A,B (for content_guard an artifact name or directory, "
                                         "optionally :VARIANT, e.g. davidson-v2:distilled,davidson-v2:base)."),
            start: Optional[str] = typer.Option(None, "--from", help=_FROM_HELP),
            end: Optional[str] = typer.Option(None, "--to", help=_TO_HELP),
            examples: int = typer.Option(10, "--examples", min=0, help="Differing decisions to show."),
            keep: bool = typer.Option(False, "--keep", help="Keep the two scratch keyspaces (default: "
                                      "dropped after the comparison)."),
            as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Replay one slice of the log through the agent once per model version (each into a scratch
    keyspace, through the worker's own code) and print how many decisions differ, by change and
    by policy category, with examples."""
    from rich.progress import Progress

    from replay.compare import compare_versions, parse_versions

    pair = parse_versions(versions)
    start_ms, end_ms = _time_range(start, end)
    s = settings()
    with Progress(console=err_console) as bar:
        tasks = {v: bar.add_task(f"replaying with {v}", total=None) for v in dict.fromkeys(pair)}
        r = compare_versions(s, agent, pair, start_ms=start_ms, end_ms=end_ms, examples=examples, keep=keep,
                             on_progress=lambda v, done, total: bar.update(tasks[v], completed=done, total=total))
    if as_json:
        print(json.dumps(r, indent=2))
        return
    a, b = pair
    console.print(f"{r['agent']}: {r['decisions']} decisions replayed with both versions "
                  f"({r['events']['a']} events each); {r['differ']} differ "
                  f"({100 * r['share_differ']:.1f} %), {r['tier_changes']} more changed tier only; "
                  f"{r['only_a']} only with {a}, {r['only_b']} only with {b}.", highlight=False)
    console.print(f"model versions named by the verdicts: A = {', '.join(r['model_versions']['a'])}; "
                  f"B = {', '.join(r['model_versions']['b'])}", highlight=False)
    for title, counts in (("change (A -> B)", r["transitions"]), ("category (stricter side)", r["by_category"])):
        if counts:
            t = Table()
            t.add_column(title)
            t.add_column("differing decisions", justify="right")
            for k, n in counts.items():
                t.add_row(k, str(n))
            console.print(t)
    for ex in r["examples"]:
        where = ex.get("post_id") + (f" comment {ex['comment_id']}" if ex.get("comment_id") else "")
        console.print(f"[bold]{where}[/]: A {ex['a']['action']} ({ex['a']['tier']}, "
                      f"{_scores(ex['a'])}) -> B {ex['b']['action']} ({ex['b']['tier']}, {_scores(ex['b'])})",
                      highlight=False)
        for reason in (ex["b"]["reasons"] or ex["a"]["reasons"])[:2]:
            console.print(f"    {reason}", highlight=False)
    if r.get("keyspaces"):
        console.print("kept: " + ", ".join(r["keyspaces"]) + " (pulse replay drop KEYSPACE removes them)")


def _scores(side: dict) -> str:
    return ", ".join(f"{c} {v:.2f}" for c, v in side["top_scores"].items()) or "no scores"


@replay_app.command("swap")
@friendly
def swap(keyspace: str = typer.Argument(..., help="A rebuilt keyspace to serve reads from.")) -> None:
    """Point every reader (CLI, API, dashboard) at KEYSPACE; the old keyspace stays readable
    until dropped. Workers started afterwards write KEYSPACE too: restart running workers."""
    from streams.query.pointer import swap_keyspace

    previous = swap_keyspace(settings(), keyspace)
    console.print(f"readers now use {keyspace} (was {previous}); restart workers so they write "
                  f"it too; `pulse replay reset` points readers back at the base keyspace")


@replay_app.command("reset")
@friendly
def reset() -> None:
    """Point every reader back at the base keyspace (PULSE_CASSANDRA_KEYSPACE)."""
    from streams.query.pointer import reset_keyspace

    s = settings()
    previous = reset_keyspace(s)
    console.print(f"readers now use {s.cassandra_keyspace} (was {previous})")


@replay_app.command("drop")
@friendly
def drop(keyspace: str = typer.Argument(..., help="A rebuilt keyspace no reader uses.")) -> None:
    """Drop a rebuilt keyspace and its vector collections (never the base or the active one)."""
    from streams.query.pointer import active_keyspace, keyspace_name
    from streams.stores.cassandra import connect

    s = settings()
    ks = keyspace_name(keyspace)
    cluster, session = connect(s)
    try:
        if ks in (keyspace_name(s.cassandra_keyspace),
                  active_keyspace(session, s.cassandra_keyspace)):
            raise typer.BadParameter(f"{ks} is the base or the active keyspace; swap away first",
                                     param_hint="KEYSPACE")
    finally:
        cluster.shutdown()
    from replay.rebuild import drop_rebuild

    dropped = drop_rebuild(s, ks)
    console.print(f"dropped keyspace {ks}" + (f" and collections {', '.join(dropped)}" if dropped
                                               else ""))
