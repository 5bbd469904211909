"""``pulse moderators add|list|remove``: the accounts that log in to the API's pages (the review
queue at /moderation, the operator dashboard); docs/web.md."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

import typer

from streams.cli.common import app, console, friendly, register_user_errors, settings
from streams.cli.tables import RecordTable

moderators_app = typer.Typer(help="Accounts of the moderators and operators who log in to the API's pages.",
                             no_args_is_help=True)
app.add_typer(moderators_app, name="moderators")


register_user_errors("streams.api.auth:AuthError", "streams.api.auth:GrantError")


@moderators_app.command("add")
@friendly
def moderators_add(name: str = typer.Argument(..., help="The account name (also the reviewer id of its decisions)."),
                   role: str = typer.Option("moderator", "--role", help="moderator (the review queue) or operator "
                                                                       "(the dashboard)."),
                   password_stdin: bool = typer.Option(False, "--password-stdin",
                                                       help="Read the password from the first line of stdin "
                                                            "(scripts) instead of prompting.")) -> None:
    """Create an account; the password is asked for twice, hidden (only its scrypt hash is kept)."""
    from streams.api.accounts import AccountStore

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    a = AccountStore.for_settings(settings()).add(name, password, role)
    console.print(f"account {a.name} ({a.role}) added; log in at /moderation" if a.role == "moderator"
                  else f"account {a.name} ({a.role}) added")


@moderators_app.command("list")
@friendly
def moderators_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every account: name, role, created (never a password or hash)."""
    from streams.api.accounts import AccountStore

    accounts = AccountStore.for_settings(settings()).list()
    if as_json:
        print(json.dumps([{"name": a.name, "role": a.role, "created_at_ms": a.created_at_ms} for a in accounts]))
        return
    if not accounts:
        console.print("no accounts (`pulse moderators add NAME`)")
        return
    t = RecordTable(f"accounts ({len(accounts)})")
    for col in ("name", "role", "created (UTC)"):
        t.add_column(col)
    for a in accounts:
        t.add_row(a.name, a.role, datetime.fromtimestamp(a.created_at_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M"))
    console.print(t)


@moderators_app.command("remove")
@friendly
def moderators_remove(name: str = typer.Argument(..., help="The account to delete.")) -> None:
    """Delete an account; its open sessions are refused within a second."""
    from streams.api.accounts import AccountStore

    a = AccountStore.for_settings(settings()).remove(name)
    console.print(f"removed {a.name} ({a.role})")
