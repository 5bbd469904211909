"""``pulse feed`` and ``pulse profile``: a user's ranked feed and behavioural profile, read from
the Cassandra views (``streams.query.feeds``)."""
from __future__ import annotations

import json
from typing import Optional

import typer

from streams.cli.common import app, bench_app, console, err_console, friendly, register_user_errors, settings
from streams.cli.tables import RecordTable


register_user_errors("streams.query.feeds:CursorError", "models.ranking.feed_row:FeedRowError")


@app.command()
@friendly
def feed(user_id: str = typer.Argument(..., help="Whose feed."),
         limit: int = typer.Option(20, "--limit", min=1, max=200, help="Posts per page (1-200)."),
         cursor: Optional[str] = typer.Option(None, "--cursor", help="next_cursor of the previous page."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """A user's feed, best first: each post with its score, where it came from and why."""
    from streams.query.feeds import read_feed

    page = read_feed(settings(), user_id, limit=limit, cursor=cursor)
    if as_json:
        print(json.dumps(page.as_dict(), indent=2))
        return
    if not page.items:
        console.print(f"no feed for {user_id}" if page.generated_at is None else
                      f"{user_id}'s feed has nothing more")
        return
    when = f"{page.generated_at:%Y-%m-%d %H:%M} UTC" if page.generated_at else "never ranked"
    t = RecordTable(f"{user_id}'s feed ({page.total} posts, ranked {when})")
    for col in ("#", "post", "creator", "score", "source"):
        t.add_column(col)
    for i in page.items:
        t.add_row(str(i.rank + 1), i.post_id, i.creator_id, f"{i.score:.3f}", i.source.lower(),
                  details=[("why", ", ".join(i.reasons))])
    console.print(t)
    if page.next_cursor:
        console.print(f"next page: pulse feed {user_id} --cursor {page.next_cursor}")


@app.command()
@friendly
def profile(user_id: str = typer.Argument(..., help="Whose profile."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """A user's behavioural profile in words: interests, affinities, active hours, cold start."""
    from streams.query.feeds import describe_profile, read_profile

    p = read_profile(settings(), user_id)
    if p is None:
        console.print(f"no profile for {user_id}")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(p, indent=2, default=str))
        return
    for line in describe_profile(p):
        console.print(line, highlight=False)


@bench_app.command("feeds")
@friendly
def bench_feeds(users: int = typer.Option(10_000, help="Feeds written for the read benchmark."),
                reads: int = typer.Option(8_000, help="Feed reads per path."),
                clients: int = typer.Option(8, help="Concurrent reading clients."),
                client_mode: str = typer.Option("processes", help="Clients as 'processes' (each with its own "
                                                "read side, as API server processes) or 'threads' (sharing "
                                                "one read side and one interpreter lock)."),
                uploads: int = typer.Option(30, help="Uploads timed from publish to a follower's feed."),
                row_format: str = typer.Option("packed", help="How the read benchmark's feeds are stored: "
                                               "'packed' (one blob, as feed_ranker writes them) or "
                                               "'collections' (the list and map columns of rankers "
                                               "before 2026-12-06).")) -> None:
    """Feed reads through the API against raw driver reads, fan-out cost by creator size, and
    upload-to-feed latency with every gate; prints one JSON object."""
    from streams.bench.feeds import CLIENT_MODES, ROW_FORMATS, run_feeds_bench

    if client_mode not in CLIENT_MODES:
        raise typer.BadParameter(f"use one of: {', '.join(CLIENT_MODES)}", param_hint="--client-mode")
    if row_format not in ROW_FORMATS:
        raise typer.BadParameter(f"use one of: {', '.join(ROW_FORMATS)}", param_hint="--row-format")
    with err_console.status("benchmarking") as st:
        result = run_feeds_bench(users=users, reads=reads, clients=clients, uploads=uploads, client_mode=client_mode,
                                 row_format=row_format, on_step=lambda m: st.update(f"bench feeds: {m}"))
    print(json.dumps(result, indent=2))
