"""The API application without servers: the error format and the catch-all handler (no
traceback ever reaches a client), CORS off unless configured, limits checked before any server
is needed."""
from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from streams.api.app import create_app
from streams.api.auth import KeyStore
from streams.settings import Settings


def client(tmp_path, **env):
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), **env})
    app = create_app(settings)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals /etc/shadow")

    key, _ = KeyStore.for_settings(settings).create("web", "uploads", "feeds")
    return TestClient(app, raise_server_exceptions=False), key


def test_an_unexpected_error_gives_a_request_id_and_no_traceback(tmp_path, caplog):
    c, _ = client(tmp_path)
    with caplog.at_level(logging.ERROR, logger="pulse.api"):
        r = c.get("/boom")
    body = r.json()["error"]
    assert r.status_code == 500 and body["code"] == "internal" and body["request_id"] in body["message"]
    assert "secret internals" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    assert r.headers["x-request-id"] == body["request_id"]
    assert body["request_id"] in caplog.text and "secret internals" in caplog.text  # logged server-side


def test_cors_is_off_unless_origins_are_configured(tmp_path):
    c, _ = client(tmp_path / "a")
    pre = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    assert "access-control-allow-origin" not in c.options("/v1/health", headers=pre).headers
    assert "access-control-allow-origin" not in c.get("/v1/health", headers={"Origin": "https://evil.example"}).headers
    c, _ = client(tmp_path / "b", PULSE_API_CORS_ORIGINS="https://app.example")
    ok = c.get("/v1/health", headers={"Origin": "https://app.example"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in c.get("/v1/health", headers={"Origin": "https://evil.example"}).headers


@pytest.mark.parametrize("path,ctype,size,setting", [
    ("/v1/events/uploads", "application/json", 2_000, "PULSE_API_MAX_BODY_BYTES"),
    ("/v1/media", "image/png", 2_000, "PULSE_MEDIA_MAX_BYTES")])
def test_oversized_bodies_are_refused_before_any_server(tmp_path, path, ctype, size, setting):
    c, key = client(tmp_path, PULSE_API_MAX_BODY_BYTES="1000", PULSE_MEDIA_MAX_BYTES="1000")
    r = c.post(path, headers={"X-API-Key": key, "Content-Type": ctype}, content=b"{" + b" " * size + b"}")
    assert r.status_code == 413 and setting in r.json()["error"]["message"]
    assert not list((tmp_path / "media").rglob("*.png"))
