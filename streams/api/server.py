"""``pulse api``: the API under uvicorn, loopback by default."""
from __future__ import annotations

import logging
from typing import Any

from streams.settings import Settings


def server_config(settings: Settings, host: str, port: int, *, log_level: str = "info") -> Any:
    """The ``uvicorn.Config`` of ``pulse api``: the app of :func:`~streams.api.app.create_app`,
    no ``Server`` header, no proxy headers trusted, access log only at ``debug``."""
    import uvicorn

    from streams.api.app import create_app

    return uvicorn.Config(create_app(settings), host=host, port=port, log_level=log_level, server_header=False,
                          proxy_headers=False, access_log=log_level == "debug")


def serve(settings: Settings, host: str, port: int, *, log_level: str = "info") -> None:
    """Serve the API on ``host:port`` until SIGINT/SIGTERM (uvicorn's graceful shutdown: open
    requests finish, unacknowledged events are flushed)."""
    import uvicorn

    logging.getLogger("pulse.api").setLevel(logging.INFO)
    uvicorn.Server(server_config(settings, host, port, log_level=log_level)).run()
