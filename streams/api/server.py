"""``pulse api``: the API under uvicorn, loopback by default."""
from __future__ import annotations

import logging

from streams.settings import Settings


def serve(settings: Settings, host: str, port: int, *, log_level: str = "info") -> None:
    """Serve the API on ``host:port`` until SIGINT/SIGTERM (uvicorn's graceful shutdown: open
    requests finish, unacknowledged events are flushed)."""
    import uvicorn

    from streams.api.app import create_app

    logging.getLogger("pulse.api").setLevel(logging.INFO)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, server_header=False,
                proxy_headers=False, access_log=log_level == "debug")
