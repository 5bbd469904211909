"""``pulse bench api``: sustained HTTP load on ``pulse api`` against a bare uvicorn baseline.

:func:`run_api_bench` (servers of its own in a temporary ``PULSE_HOME`` unless settings are
given):

1. writes ``users`` feeds of ``items`` posts and a full fresh pool as feed_ranker writes them
   (:func:`streams.bench.feeds.seed_feeds`: every read ranks the whole pool in, the worst case);
2. creates an API key granted ``feeds`` and the ``interactions`` topic, and starts the API as
   ``pulse api --workers N`` does (``uvicorn --factory streams.api.server:app_from_env``), with
   the key's rate limit lifted (``PULSE_API_KEY_RATE``) so that the bench measures the server,
   not the limiter;
3. captures one real feed page and one real ingest acknowledgment from it, and starts the
   baseline (:mod:`streams.bench.bare_api`: the same bytes, no Pulse code) under the same
   uvicorn command line;
4. drives each with `wrk <https://github.com/wg/wrk>`_ (``connections`` concurrent keep-alive
   clients on loopback for ``duration_s`` seconds each; a Lua script picks a random user per
   feed read and posts one VIEW interaction per ingest request): baseline reads, API reads,
   baseline ingest, API ingest.

wrk is a closed-loop generator: each connection sends its next request when the last one is
answered, so requests/s is the sustained throughput at that concurrency, and p50/p99 are the
latencies at it. Errors are every socket error (connect, read, write, timeout) and every HTTP
status of 400 or more (wrk's ``status`` count): a 429, a 503 or a 500 all count.

Goals (issue 15): no errors; feed read p99 under 20 ms at 1,000 requests/s or more.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

from streams.settings import REPO_ROOT, Settings

Step = Callable[[str], None]
Progress = Callable[[str, int, int], None]

WRK_MISSING = "wrk, the load generator of `pulse bench api`, is not installed: run `make install` " \
              "(scripts/install-system-deps.sh) or `apt-get install wrk`"

_LUA = r"""
local users = dofile("%(users)s")
local key = "%(key)s"
local mode = "%(mode)s"
local counter = 0
setup = function(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
init = function(args)
  math.randomseed(os.time() * 1000 + tid)
  n = 0
end
request = function()
  n = n + 1
  local u = users[math.random(#users)]
  if mode == "read" then
    return wrk.format("GET", "/v1/feeds/" .. u .. "?limit=20", {["X-API-Key"] = key})
  end
  local body = '{"user_id": "' .. u .. '", "post_id": "bench-p' .. (n %% 200) ..
               '", "type": "VIEW", "dwell_ms": 1200, "surface": "bench"}'
  return wrk.format("POST", "/v1/events/interactions",
                    {["X-API-Key"] = key, ["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('PULSE_WRK {"requests": %%d, "duration_us": %%d, "bytes": %%d, ' ..
    '"errors": {"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}, ' ..
    '"latency_us": {"p50": %%d, "p90": %%d, "p99": %%d, "p999": %%d, "max": %%d, "mean": %%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _uvicorn(app: str, port: int, workers: int, env: dict[str, str], log: Path, factory: bool) -> subprocess.Popen:
    """``app`` under uvicorn on loopback with the flags of ``pulse api`` (no server header, no
    proxy headers, no access log)."""
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--log-level", "warning", "--no-server-header", "--no-proxy-headers",
           "--no-access-log"] + (["--factory"] if factory else [])
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; its log: {log}\n"
                               + log.read_text(errors="replace")[-2000:])
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s; server log: {log}")


def _stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _pulse(env: dict[str, str], *args: str) -> dict:
    """``pulse ARGS`` (its JSON output) in ``env``: the bench creates its API key as an operator does."""
    out = subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"pulse {' '.join(args)} failed: {out.stderr[-1000:]}")
    return json.loads(out.stdout)


def _fetch(url: str, key: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"X-API-Key": key}
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def summarize(raw: dict) -> dict:
    """One wrk run's ``done`` record -> requests/s, latency percentiles (ms) and error counts.

    ``raw``: ``{"requests", "duration_us", "bytes", "errors": {connect, read, write, status,
    timeout}, "latency_us": {p50, p90, p99, p999, max, mean}}`` as the Lua ``done`` hook prints
    it (wrk reports microseconds)."""
    lat = raw["latency_us"]
    errors = sum(raw["errors"].values())
    seconds = raw["duration_us"] / 1e6
    return {"requests": raw["requests"], "seconds": round(seconds, 2),
            "requests_per_s": round(raw["requests"] / seconds, 1) if seconds else 0.0,
            "p50_ms": round(lat["p50"] / 1000, 3), "p90_ms": round(lat["p90"] / 1000, 3),
            "p99_ms": round(lat["p99"] / 1000, 3), "p999_ms": round(lat["p999"] / 1000, 3),
            "max_ms": round(lat["max"] / 1000, 3), "mean_ms": round(lat["mean"] / 1000, 3),
            "errors": errors, "errors_by_kind": {k: v for k, v in raw["errors"].items() if v}}


def parse_wrk(stdout: str) -> dict:
    """The ``PULSE_WRK {...}`` line of a wrk run's output, summarized (:func:`summarize`).

    Raises ValueError when the line is missing (wrk failed before its ``done`` hook)."""
    for line in stdout.splitlines():
        if line.startswith("PULSE_WRK "):
            return summarize(json.loads(line[len("PULSE_WRK "):]))
    raise ValueError("wrk printed no summary (PULSE_WRK line); its output:\n" + stdout[-2000:])


def _wrk(base_url: str, script: Path, connections: int, threads: int, duration_s: int, label: str,
         on_progress: Progress) -> dict:
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s}s", "--timeout", "10s",
           "-s", str(script), base_url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    began = time.monotonic()
    while proc.poll() is None:
        on_progress(label, min(duration_s, int(time.monotonic() - began)), duration_s)
        time.sleep(0.5)
    out = proc.stdout.read()
    on_progress(label, duration_s, duration_s)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{out[-2000:]}")
    return parse_wrk(out)


def bench_api(settings: Settings, *, users: int = 1_000, items: int = 200, fresh: int | None = None,
              duration_s: int = 30, connections: int = 32, threads: int = 2, workers: int = 1,
              on_step: Step = lambda m: None, on_progress: Progress = lambda t, d, n: None) -> dict:
    """The four wrk runs of the module docstring against servers that answer at ``settings``.

    ``workers``: server processes of the API and of the baseline alike. Returns the config,
    ``feed_read`` and ``ingest`` (each ``{"api", "baseline", "p99_ratio", "throughput_ratio"}``)
    and ``goals``.

    Raises RuntimeError (wrk missing, a server that does not start, a first request that fails)."""
    if shutil.which("wrk") is None:
        raise RuntimeError(WRK_MISSING)
    from streams.bench.feeds import seed_feeds
    from streams.query.read_side import ReadSide

    fresh = settings.feed_fresh_pool if fresh is None else fresh
    with tempfile.TemporaryDirectory(prefix="pulse-bench-api-") as tmp, ReadSide(settings) as rs:
        tmpd = Path(tmp)
        on_step(f"writing {users} feeds of {items} posts and a fresh pool of {fresh} posts")
        ids, remove = seed_feeds(rs.session, rs.active_keyspace(), users=users, items=items, fresh=fresh)
        procs: list[subprocess.Popen] = []
        try:
            env = {**os.environ, "PULSE_HOME": str(settings.home), "PULSE_API_KEY_RATE": "1000000000",
                   "PULSE_API_KEY_BURST": "1000000000"}
            name = f"bench-api-{uuid.uuid4().hex[:6]}"
            key = _pulse(env, "keys", "create", name, "--topics", "interactions", "--reads", "feeds", "--json")["key"]
            api_port = _free_port()
            on_step(f"starting pulse api ({workers} process(es))")
            procs.append(_uvicorn("streams.api.server:app_from_env", api_port, workers, env, tmpd / "api.log",
                                  factory=True))
            api_url = f"http://127.0.0.1:{api_port}"
            _wait_http(api_url + "/v1/health", procs[-1], tmpd / "api.log")
            status, page = _fetch(f"{api_url}/v1/feeds/{ids[0]}?limit=20", key)
            if status != 200 or not json.loads(page).get("items"):
                raise RuntimeError(f"the first feed read answered {status}: {page[:300]!r}")
            status, ack = _fetch(f"{api_url}/v1/events/interactions", key, json.dumps(
                {"user_id": ids[0], "post_id": "bench-p0", "type": "VIEW", "dwell_ms": 1200,
                 "surface": "bench"}).encode())
            if status != 202:
                raise RuntimeError(f"the first ingest answered {status}: {ack[:300]!r}")
            (tmpd / "get.json").write_bytes(page)
            (tmpd / "post.json").write_bytes(ack)
            base_port = _free_port()
            on_step("starting the bare uvicorn baseline")
            procs.append(_uvicorn("streams.bench.bare_api:app", base_port, workers,
                                  {**env, "PULSE_BENCH_BARE_GET": str(tmpd / "get.json"),
                                   "PULSE_BENCH_BARE_POST": str(tmpd / "post.json")}, tmpd / "bare.log",
                                  factory=False))
            base_url = f"http://127.0.0.1:{base_port}"
            _wait_http(base_url + "/", procs[-1], tmpd / "bare.log")
            (tmpd / "users.lua").write_text("return {" + ",".join(json.dumps(u) for u in ids) + "}\n")
            scripts = {}
            for mode in ("read", "ingest"):
                scripts[mode] = tmpd / f"{mode}.lua"
                scripts[mode].write_text(_LUA % {"users": tmpd / "users.lua", "key": key, "mode": mode})
            runs = {}
            for mode, target, url in (("read", "baseline", base_url), ("read", "api", api_url),
                                      ("ingest", "baseline", base_url), ("ingest", "api", api_url)):
                label = f"{'feed reads' if mode == 'read' else 'ingest'}: {target}"
                on_step(f"{label}, {connections} connections for {duration_s} s")
                runs[(mode, target)] = _wrk(url, scripts[mode], connections, threads, duration_s, label,
                                            on_progress)
            subprocess.run([sys.executable, "-m", "streams.cli", "keys", "revoke", name], env=env, cwd=REPO_ROOT,
                           capture_output=True, check=True)
        finally:
            for p in procs:
                _stop(p)
            on_step("removing the bench feeds")
            remove()

    def pair(mode: str) -> dict:
        api, base = runs[(mode, "api")], runs[(mode, "baseline")]
        return {"api": api, "baseline": base,
                "p99_ratio": round(api["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None,
                "throughput_ratio": round(api["requests_per_s"] / base["requests_per_s"], 3)
                if base["requests_per_s"] else None}

    reads, ingest = pair("read"), pair("ingest")
    return {"config": {"users": users, "items_per_feed": items, "fresh_pool": fresh, "duration_s": duration_s,
                       "connections": connections, "wrk_threads": threads, "server_processes": workers,
                       "cores": os.cpu_count()},
            "feed_read": reads, "ingest": ingest,
            "goals": {"no_errors": reads["api"]["errors"] == 0 and ingest["api"]["errors"] == 0,
                      "feed_read_p99_under_20ms_at_1000_rps": reads["api"]["p99_ms"] < 20.0
                      and reads["api"]["requests_per_s"] >= 1000.0}}


def run_api_bench(*, settings: Settings | None = None, on_step: Step = lambda m: None,
                  on_progress: Progress = lambda t, d, n: None, **kw) -> dict:
    """:func:`bench_api` on servers of its own (a temporary ``PULSE_HOME``, topics and keyspace
    provisioned) unless ``settings`` is given."""
    from streams.bench import bench_servers
    from streams.servers.provision import provision

    if settings is not None:
        provision(settings)
        return bench_api(settings, on_step=on_step, on_progress=on_progress, **kw)
    with bench_servers("pulse-bench-api-", on_step, PULSE_APP_ID="bench-api") as (s, _home, _up):
        provision(s)
        return bench_api(s, on_step=on_step, on_progress=on_progress, **kw)
