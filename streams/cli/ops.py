"""``pulse dashboard``: the operator dashboard (the API's app, its collector always on);
docs/operations.md."""
from __future__ import annotations

from typing import Optional

import typer

from streams.cli.common import app, err_console, friendly, settings


@app.command("dashboard")
@friendly
def dashboard(host: Optional[str] = typer.Option(None, help="Address to listen on (default PULSE_API_HOST, 127.0.0.1)."),
              port: Optional[int] = typer.Option(None, help="Port (default PULSE_API_PORT, 8080)."),
              log_level: str = typer.Option("warning", help="uvicorn's log level.")) -> None:
    """Serve the operator dashboard at /dashboard (and the whole API, /metrics included) until
    Ctrl-C. The collector reads the local workers (found under $PULSE_HOME/run/metrics/), Kafka
    and the views every second from the start. Log in with an operator account
    (`pulse moderators add NAME --role operator`)."""
    import uvicorn

    from streams.api.app import create_app
    from streams.api.ops import OpsState

    s = settings()
    host, port = host or s.api_host, port if port is not None else s.api_port
    api = create_app(s)
    ctx = api.state.pulse
    api.state.ops = OpsState(s, ctx.read_side, keep_running=True)
    api.state.ops.get()
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]listening on {host}: reachable from other machines; put TLS in front[/]")
    err_console.print(f"pulse dashboard on http://{host}:{port}/dashboard (Prometheus: /metrics)")
    uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level=log_level, server_header=False,
                                  proxy_headers=False, access_log=False)).run()
