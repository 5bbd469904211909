"""``pulse``: the command line of Pulse (typer + rich).

Every command builds one :class:`~streams.settings.Settings` from the environment and the state
file, and turns Pulse's own errors into one red line a person can act on (exit code 1), never a
traceback. The commands live in one module per area; importing this package registers them all.
"""
from __future__ import annotations

import importlib
import sys

from streams.settings import SettingsError
from streams.cli.common import app, err_console

#: Command modules, in help order. Each attaches its commands to the apps of ``common``.
COMMAND_MODULES = ("core", "feeds", "replay", "review", "copyright", "copyright_stream", "moderation",
                   "clip", "ranking", "models", "trends", "timing", "notifications",
                   "analytics", "erasure", "api", "moderators", "ops", "bench_replay", "bench_delivery")

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}")


def main() -> None:
    """Entry point of the ``pulse`` script."""
    import logging

    # librdkafka warnings it retries by itself (a coordinator still loading) are noise on a
    # terminal; its errors still show, and failures reach the user as Pulse errors
    logging.getLogger("pulse.librdkafka").setLevel(logging.ERROR)
    try:
        app()
    except SettingsError as exc:  # raised before a command's own handler runs
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
