"""``pulse review``: the human moderators' queue (list pending tasks, decide one)."""
from __future__ import annotations

import json
import os
from typing import List, Optional

import typer

from streams.cli.common import app, console, friendly, register_user_errors, settings
from streams.cli.tables import RecordTable

review_app = typer.Typer(help="Human review of what the gates (Content Guard, Copyright Guard) "
                              "could not decide.",
                         no_args_is_help=True)
app.add_typer(review_app, name="review")


register_user_errors("streams.query.review:ReviewError")


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
    console.print(review_table(tasks))


#: Characters of a task's text shown by ``pulse review list`` (``--json`` prints all of it).
TEXT_CHARS = 240


def review_table(tasks: list[dict]) -> RecordTable:
    """``pulse review list``'s listing of ``tasks`` (dicts as ``pending_tasks`` returns them):
    per task one line with the task id, queue, creation time (UTC) and priority, then the post
    (and comment) id, the top three scores, the reasons, the text (first :data:`TEXT_CHARS`
    characters) and the media URI on lines below it. Ids are printed whole."""
    table = RecordTable(f"{len(tasks)} pending review task(s), oldest first")
    for col in ("task", "queue", "created (UTC)", "priority"):
        table.add_column(col)
    for t in tasks:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in sorted((t["scores"] or {}).items(),
                                                             key=lambda kv: -kv[1])[:3])
        text = t["text"] or ""
        post = t["post_id"] + (f" / comment {t['comment_id']}" if t["comment_id"] else "")
        table.add_row(t["task_id"], t["queue"] or "moderation",
                      f"{t['created_at']:%Y-%m-%d %H:%M:%S}", t["priority"] or "",
                      details=[("post", post), ("scores", scores),
                               ("reasons", "; ".join(t["reasons"] or [])),
                               ("text", text[:TEXT_CHARS] + ("…" if len(text) > TEXT_CHARS else "")),
                               ("media", t["media_uri"] or "")])
    return table


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
