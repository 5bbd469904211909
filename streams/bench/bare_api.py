"""The same-run baseline of ``pulse bench api``: a bare ASGI app under the same uvicorn command
line as the API, answering every GET with one real feed page and every POST with one real
ingest acknowledgment, byte for byte as the API answered them. No routing, validation,
authentication, Cassandra read or Kafka write: what is left is uvicorn, HTTP/1.1 and the
loopback, so API minus baseline is Pulse's own cost.

The bodies come from the files named by ``PULSE_BENCH_BARE_GET`` and ``PULSE_BENCH_BARE_POST``
(written by :func:`streams.bench.api.run_api_bench`), read once at import.
"""
from __future__ import annotations

import os
from pathlib import Path

_GET = Path(os.environ.get("PULSE_BENCH_BARE_GET", "/dev/null")).read_bytes()
_POST = Path(os.environ.get("PULSE_BENCH_BARE_POST", "/dev/null")).read_bytes()
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send) -> None:
    """ASGI 3: GET -> 200 with the feed page, POST -> 202 with the acknowledgment (the request
    body is read to its end first, as the API reads it)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        status, body = 202, _POST
    else:
        status, body = 200, _GET
    await send({"type": "http.response.start", "status": status,
                "headers": _HEADERS + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
