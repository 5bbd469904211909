"""``pulse api`` (the HTTP API for upstream apps), ``pulse keys create|list|revoke`` (apps' API
keys) and ``pulse token USER_ID`` (a signed user token); docs/api.md."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Optional

import typer

from streams.cli.common import (app, bench_app, bench_progress, console, err_console, friendly,
                                 register_user_errors, settings)
from streams.cli.tables import RecordTable

keys_app = typer.Typer(help="API keys of the apps that call `pulse api`.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


register_user_errors("streams.api.auth:AuthError", "streams.api.auth:GrantError")


@app.command("api")
@friendly
def api(host: Optional[str] = typer.Option(None, help="Address to listen on (default PULSE_API_HOST, 127.0.0.1)."),
        port: Optional[int] = typer.Option(None, help="Port (default PULSE_API_PORT, 8080)."),
        log_level: str = typer.Option("info", help="uvicorn's log level."),
        workers: int = typer.Option(1, min=1, help="Server processes on the one port (each with its own "
                                                   "Cassandra session, producer and rate-limit buckets).")) -> None:
    """Serve the HTTP API (OpenAPI at /docs) until Ctrl-C: events and media in, feeds and the
    other views out, for API keys and user tokens."""
    from streams.api.server import serve

    s = settings()
    host, port = host or s.api_host, port if port is not None else s.api_port
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]listening on {host}: reachable from other machines; put TLS in front[/]")
    err_console.print(f"pulse api on http://{host}:{port} (docs: http://{host}:{port}/docs)")
    serve(s, host, port, log_level=log_level, workers=workers)


def _ms(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")


@keys_app.command("create")
@friendly
def keys_create(name: str = typer.Argument(..., help="The app's name: the producer of the events it publishes."),
                topics: str = typer.Option("", "--topics", help="Topics it may publish to, comma-separated (or all)."),
                reads: str = typer.Option("", "--reads", help="Reads it may make: feeds, notifications, search, "
                                                              "trends, golden-moments, posts (or all)."),
                as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create an API key; it is printed once (only its hash is kept)."""
    from streams.api.auth import KeyStore

    key, rec = KeyStore.for_settings(settings()).create(name, topics, reads)
    if as_json:
        print(json.dumps({"key": key, "key_id": rec.key_id, "name": rec.name, "topics": list(rec.topics),
                          "reads": list(rec.reads)}))
        return
    console.print(f"API key for {rec.name} (id {rec.key_id}); shown once, keep it secret:")
    print(key)
    console.print(f"topics: {', '.join(rec.topics) or 'none'}; reads: {', '.join(rec.reads) or 'none'}")


@keys_app.command("list")
@friendly
def keys_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every key (never the key itself): id, app, grants, created, revoked."""
    from streams.api.auth import KeyStore

    keys = KeyStore.for_settings(settings()).list()
    if as_json:
        print(json.dumps([{"key_id": k.key_id, "name": k.name, "topics": list(k.topics), "reads": list(k.reads),
                           "created_at_ms": k.created_at_ms, "revoked_at_ms": k.revoked_at_ms} for k in keys]))
        return
    if not keys:
        console.print("no API keys (`pulse keys create NAME --topics ... --reads ...`)")
        return
    t = RecordTable(f"API keys ({len(keys)})")
    for col in ("id", "app", "created (UTC)", "revoked (UTC)"):
        t.add_column(col)
    for k in keys:
        t.add_row(k.key_id, k.name, _ms(k.created_at_ms), _ms(k.revoked_at_ms),
                  details=[("topics", ", ".join(k.topics) or "none"), ("reads", ", ".join(k.reads) or "none")])
    console.print(t)


@keys_app.command("revoke")
@friendly
def keys_revoke(name_or_id: str = typer.Argument(..., help="A key id, or an app name (all its keys).")) -> None:
    """Revoke keys; running API processes refuse them within a second."""
    from streams.api.auth import KeyStore

    for k in KeyStore.for_settings(settings()).revoke(name_or_id):
        console.print(f"revoked {k.key_id} ({k.name})")


@app.command("token")
@friendly
def token(user_id: str = typer.Argument(..., help="The user the token speaks for."),
          ttl: Optional[int] = typer.Option(None, "--ttl", min=1, help="Seconds it is valid (default PULSE_API_TOKEN_TTL_S)."),
          role: str = typer.Option("user", "--role", help="user, moderator or operator.")) -> None:
    """Print a signed user token (JWT, HS256) for Authorization: Bearer."""
    from streams.api.auth import issue_token, token_secret

    s = settings()
    print(issue_token(token_secret(s), user_id, ttl_s=ttl or s.api_token_ttl_s, role=role))


@bench_app.command("api")
@friendly
def bench_api(duration_s: int = typer.Option(30, "--duration-s", min=1, help="Seconds of load per run."),
              connections: int = typer.Option(32, min=1, help="Concurrent keep-alive clients (wrk connections)."),
              users: int = typer.Option(1_000, min=1, help="Feeds written; each read picks one at random."),
              workers: int = typer.Option(1, min=1, help="Server processes of the API and of the baseline."),
              running: bool = typer.Option(False, "--running", help="Use the servers of `pulse up` "
                                                                    "instead of starting its own.")) -> None:
    """Sustained feed reads and event ingest through `pulse api` against a bare uvicorn endpoint
    returning the same JSON, with wrk on loopback; prints one JSON object."""
    from streams.bench.api import run_api_bench

    with bench_progress("api") as (on_step, on_progress):
        result = run_api_bench(settings=settings() if running else None, on_step=on_step,
                               on_progress=on_progress, duration_s=duration_s, connections=connections,
                               users=users, workers=workers)
    print(json.dumps(result, indent=2))
