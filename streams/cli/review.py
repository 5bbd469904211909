"""``pulse review``: the human moderators' queue (list pending tasks, decide one)."""
from __future__ import annotations

import json
import os
from typing import List, Optional

import typer
from rich.table import Table

from streams.cli.common import app, console, friendly, register_user_errors, settings

review_app = typer.Typer(help="Human review of what the gates (Content Guard, Copyright Guard) "
                              "could not decide.",
                         no_args_is_help=True)
app.add_typer(review_app, name="review")


def _errors():
    from streams.query.review import ReviewError

    register_user_errors(ReviewError)


_errors()


@review_app.command("list")
@friendly
def review_list(limit: int = typer.Option(20, help="How many tasks to show."),
                queue: Optional[str] = typer.Option(None, help="moderation or copyright (default: both)."),
                as_json: bool = typer.Option(False, "--json", help="Print JSON lines.")) -> None:
    """Pending review tasks, oldest first, with the models' scores and reasons."""
    from streams.query.review import pending_tasks

    tasks = pending_tasks(settings(), limit, queue)
    if as_json:
        for t in tasks:
            print(json.dumps(t, default=str))
        return
    if not tasks:
        console.print("no pending review tasks")
        return
    table = Table(title=f"{len(tasks)} pending review task(s), oldest first")
    for col in ("task", "queue", "created (UTC)", "priority", "post / comment", "scores", "reasons",
                "text"):
        table.add_column(col, overflow="fold")
    for t in tasks:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in sorted((t["scores"] or {}).items(),
                                                             key=lambda kv: -kv[1])[:3])
        table.add_row(t["task_id"], t["queue"] or "moderation", f"{t['created_at']:%Y-%m-%d %H:%M:%S}", t["priority"] or "",
                      t["post_id"] + (f" / {t['comment_id']}" if t["comment_id"] else ""), scores,
                      "; ".join(t["reasons"] or []), (t["text"] or t["media_uri"] or "")[:120])
    console.print(table)


@review_app.command("decide")
@friendly
def review_decide(task_id: str = typer.Argument(..., help="The task id from `pulse review list`."),
                  action: str = typer.Option(..., "--action", help="ALLOW, RESTRICT or BLOCK."),
                  category: Optional[List[str]] = typer.Option(
                      None, "--category", help="Policy category the decision is about (repeatable)."),
                  note: Optional[str] = typer.Option(None, "--note", help="Free text for the record."),
                  reviewer: str = typer.Option(os.environ.get("USER") or "moderator", "--reviewer",
                                               help="Your moderator id (default: $USER)."),
                  as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON.")) -> None:
    """Decide a pending task: publishes the decision on review-decisions (the gate that asked
    then emits its final verdict). An unknown or already decided task is refused."""
    from streams.query.review import decide

    d = decide(settings(), task_id, action, reviewer_id=reviewer, categories=list(category or []),
               note=note)
    if as_json:
        print(json.dumps(d, default=str))
    else:
        console.print(f"decided {task_id}: [bold]{d['action']}[/] for post {d['post_id']} "
                      f"(published on review-decisions)")
