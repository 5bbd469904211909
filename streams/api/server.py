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


def app_from_env() -> Any:
    """uvicorn's app factory for several server processes (``pulse api --workers N``,
    ``uvicorn --factory streams.api.server:app_from_env``): each process builds the app of
    :func:`~streams.api.app.create_app` from its environment (``PULSE_*``), so every process
    shares ``PULSE_HOME``'s key file and token secret."""
    from streams.api.app import create_app

    return create_app(Settings.from_env())


def serve(settings: Settings, host: str, port: int, *, log_level: str = "info", workers: int = 1) -> None:
    """Serve the API on ``host:port`` until SIGINT/SIGTERM (uvicorn's graceful shutdown: open
    requests finish, unacknowledged events are flushed).

    ``workers`` > 1 runs that many server processes on one socket (uvicorn's supervisor), each
    built by :func:`app_from_env` from the environment, which must then describe ``settings``
    (the CLI builds both from the same environment); each process has its own Cassandra
    session, producer and rate-limit buckets."""
    import uvicorn

    logging.getLogger("pulse.api").setLevel(logging.INFO)
    if workers > 1:
        uvicorn.run("streams.api.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, server_header=False, proxy_headers=False,
                    access_log=log_level == "debug")
        return
    uvicorn.Server(server_config(settings, host, port, log_level=log_level)).run()
