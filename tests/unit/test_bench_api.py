"""``pulse bench api``'s parsing of wrk's summary and the baseline app's answers."""
from __future__ import annotations

import asyncio
import json

import pytest

from streams.bench.api import parse_wrk, summarize

RAW = {"requests": 30_000, "duration_us": 30_000_000, "bytes": 1, "latency_us":
       {"p50": 1500, "p90": 4000, "p99": 12_500, "p999": 40_000, "max": 90_000, "mean": 2100.0},
       "errors": {"connect": 0, "read": 0, "write": 0, "status": 3, "timeout": 1}}


def test_summary_is_in_requests_per_second_and_milliseconds_and_counts_every_error():
    s = summarize(RAW)
    assert s["requests_per_s"] == 1000.0 and s["seconds"] == 30.0
    assert (s["p50_ms"], s["p99_ms"], s["max_ms"]) == (1.5, 12.5, 90.0)
    assert s["errors"] == 4 and s["errors_by_kind"] == {"status": 3, "timeout": 1}


def test_the_summary_line_is_found_among_wrk_output_and_its_absence_is_an_error():
    out = "Running 30s test @ http://x\n  2 threads\nPULSE_WRK " + json.dumps(RAW) + "\n"
    assert parse_wrk(out)["requests"] == 30_000
    with pytest.raises(ValueError, match="no summary"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_the_baseline_answers_get_and_post_with_the_captured_bytes(tmp_path, monkeypatch):
    import importlib

    (tmp_path / "g").write_bytes(b'{"items": [1]}')
    (tmp_path / "p").write_bytes(b'{"event_id": "e"}')
    monkeypatch.setenv("PULSE_BENCH_BARE_GET", str(tmp_path / "g"))
    monkeypatch.setenv("PULSE_BENCH_BARE_POST", str(tmp_path / "p"))
    import streams.bench.bare_api as bare

    bare = importlib.reload(bare)

    async def call(method: str, body: bytes = b"") -> list[dict]:
        sent: list[dict] = []
        chunks = [{"type": "http.request", "body": body[:2], "more_body": True},
                  {"type": "http.request", "body": body[2:], "more_body": False}]

        async def receive():
            return chunks.pop(0)

        async def send(m):
            sent.append(m)

        await bare.app({"type": "http", "method": method, "path": "/"}, receive, send)
        return sent

    get = asyncio.run(call("GET"))
    assert get[0]["status"] == 200 and get[1]["body"] == b'{"items": [1]}'
    post = asyncio.run(call("POST", b'{"user_id": "u"}'))
    assert post[0]["status"] == 202 and post[1]["body"] == b'{"event_id": "e"}'
    assert (b"content-length", b"17") in post[0]["headers"]


def test_wrk_drives_the_baseline_with_the_benchs_script_and_reports_no_errors(tmp_path):
    """The Lua script as the bench renders it, run by the real wrk against the real baseline
    under uvicorn: reads and ingest both complete without an error."""
    import shutil

    from streams.bench.api import _LUA, _free_port, _stop, _uvicorn, _wait_http, _wrk

    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (scripts/install-system-deps.sh installs it)")
    (tmp_path / "g").write_bytes(b'{"items": []}')
    (tmp_path / "p").write_bytes(b'{"event_id": "e"}')
    (tmp_path / "users.lua").write_text('return {"u1","u2"}\n')
    import os

    env = {**os.environ, "PULSE_BENCH_BARE_GET": str(tmp_path / "g"), "PULSE_BENCH_BARE_POST": str(tmp_path / "p")}
    port = _free_port()
    proc = _uvicorn("streams.bench.bare_api:app", port, 1, env, tmp_path / "log", factory=False)
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc, tmp_path / "log", timeout_s=60)
        for mode in ("read", "ingest"):
            script = tmp_path / f"{mode}.lua"
            script.write_text(_LUA % {"users": tmp_path / "users.lua", "key": "k", "mode": mode})
            out = _wrk(f"http://127.0.0.1:{port}", script, 4, 1, 1, mode, lambda *a: None)
            assert out["requests"] > 0 and out["errors"] == 0, out
    finally:
        _stop(proc)
