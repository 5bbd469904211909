"""``pulse erase USER_ID`` (publish an erasure request; with ``--wait``, print the report once
the eraser and every agent that forgets users have reported) and ``pulse erasure-report
REQUEST_ID`` (``docs/erasure.md``)."""
from __future__ import annotations

import json
import time
from typing import Optional

import typer

from agents.shared.erasure import LEGAL_BASES, erasure_request
from streams.cli.common import app, console, err_console, friendly, register_user_errors, settings
from streams.cli.tables import RecordTable


class ErasureWaitTimeout(RuntimeError):
    """``pulse erase --wait`` gave up before every component reported."""


register_user_errors(ErasureWaitTimeout)


def _print_report(report, expected: list[str]) -> None:
    console.print(f"erasure {report.request_id}: user {report.user_id or '?'}, scope "
                  f"{(report.scope or '?').lower()} ({report.detail or ''})", highlight=False)
    t = RecordTable(f"removed ({sum(sum(v.values()) for v in report.components.values())} in all)")
    for col in ("component", "what", "count"):
        t.add_column(col)
    for component in sorted(report.components, key=lambda c: (c != "eraser", c)):
        items = report.components[component] or {"(nothing held)": 0}
        for item, n in sorted(items.items()):
            t.add_row(component, item, str(n))
    console.print(t)
    missing = report.missing(expected)
    if missing:
        console.print(f"[yellow]not reported yet:[/] {', '.join(missing)} (are their workers running?)")


@app.command()
@friendly
def erase(user_id: str = typer.Argument(..., help="The data subject's user id."),
          post: Optional[str] = typer.Option(None, "--post", help="Erase only this post of the user (scope POST)."),
          basis: str = typer.Option("GDPR", "--basis", help=f"Legal basis: {', '.join(LEGAL_BASES)}."),
          wait: bool = typer.Option(False, "--wait", help="Wait for the report of every component."),
          timeout_s: float = typer.Option(300.0, "--timeout", help="Seconds --wait waits at most."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Publish an erasure request (GDPR art. 17 / CCPA) for USER_ID on ``erasure-requests``: the
    eraser removes the user's rows from every view, their vector points and their keys on
    compacted topics; the stateful agents forget them. With --wait, print what was removed where
    once every component has reported."""
    from streams.producer import Publisher
    from streams.query.erasure import read_erasure_report

    if basis not in LEGAL_BASES:
        raise typer.BadParameter(f"--basis {basis!r}: use one of {', '.join(LEGAL_BASES)}")
    s = settings()
    record = erasure_request(user_id, post_id=post, basis=basis)
    with Publisher(s, producer_name="pulse-cli") as pub:
        pub.publish("erasure-requests", record)
    request_id = record["request_id"]
    if not wait:
        if as_json:
            print(json.dumps({"request_id": request_id, "user_id": user_id, "scope": record["scope"]}))
        else:
            console.print(f"erasure request {request_id} published; `pulse erasure-report {request_id}` "
                          f"shows what was removed", highlight=False)
        return
    from agents.registry import erasure_components  # every agent: imported only when used

    expected = erasure_components()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout_s
    with Progress(TextColumn("[bold]erasure[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("components reported", total=len(expected))
        while True:
            report = read_erasure_report(s, request_id)
            missing = report.missing(expected)
            bar.update(task, completed=len(expected) - len(missing),
                       description=f"waiting for {', '.join(missing)}" if missing else "done")
            if not missing:
                break
            if time.monotonic() > deadline:
                raise ErasureWaitTimeout(
                    f"erasure {request_id}: {', '.join(missing)} did not report within {timeout_s:.0f} s; "
                    f"is `pulse worker` running them? `pulse erasure-report {request_id}` shows the report later")
            time.sleep(0.5)
    if as_json:
        print(json.dumps({**report.as_dict(), "expected": expected}, indent=2))
    else:
        _print_report(report, expected)


@app.command("erasure-report")
@friendly
def erasure_report(request_id: str = typer.Argument(..., help="The erasure request's id."),
                   as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What an erasure removed, per component (from the ``erasure_log`` view)."""
    from streams.query.erasure import read_erasure_report

    report = read_erasure_report(settings(), request_id)
    from agents.registry import erasure_components  # every agent: imported only when used

    expected = erasure_components()
    if as_json:
        print(json.dumps({**report.as_dict(), "expected": expected, "missing": report.missing(expected)},
                         indent=2))
        return
    if not report.components and report.user_id is None:
        console.print(f"no report for erasure {request_id} yet (the eraser has not processed it, or the id is wrong)")
        return
    _print_report(report, expected)
