"""Every route the API serves, found from the application itself (its OpenAPI document), refuses
a request without a credential, with a forged, expired or unsigned token and with an unknown
key, before any server is touched; the role-guarded ones refuse a plain user. A new endpoint is
covered the day it is added: only the routes listed in PUBLIC may answer without a credential."""
from __future__ import annotations

import time

import jwt
import pytest
from fastapi.testclient import TestClient

from streams.api.app import create_app
from streams.api.auth import KeyStore, token_secret
from streams.settings import Settings

PUBLIC = {("get", "/v1/health"): "liveness",
          ("post", "/v1/session"): "the login form itself (name and password)",
          ("delete", "/v1/session"): "logging out needs no valid session"}
"""Routes that answer without a credential, and why."""
ROLE_PREFIXES = {"/v1/review/": "moderator", "/v1/ops/": "operator", "/metrics": "operator"}
"""Routes only a role may use (an operator or moderator login or token)."""


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path_factory.mktemp("home"))})
    key, _ = KeyStore.for_settings(settings).create("sec-test", "all", "all")  # before the app reads the file
    narrow, _ = KeyStore.for_settings(settings).create("narrow-sec", "follows", "feeds")
    app = create_app(settings)
    routes = [(method, path) for path, ops in app.openapi()["paths"].items() for method in ops]
    with TestClient(app, raise_server_exceptions=False) as client:
        client.narrow_key = narrow
        yield client, token_secret(settings), routes, key


def call(client, method, path, headers):
    url = path.replace("{topic}", "follows")
    for name in ("user_id", "creator_id", "post_id", "task_id"):
        url = url.replace("{" + name + "}", "victim")
    return client.request(method.upper(), url, headers=headers, json={"follower_id": "victim"})


def token(secret, sub="me", role="user", **over):
    now = int(time.time())
    return "Bearer " + jwt.encode({"iss": "pulse", "sub": sub, "role": role, "iat": now, "exp": now + 300, **over},
                                  secret, algorithm="HS256")


def test_the_application_serves_the_routes_this_test_knows_of(api):
    _, _, routes, _ = api
    paths = {p for _, p in routes}
    assert {"/v1/feeds/{user_id}", "/v1/events/{topic}", "/v1/review/tasks", "/metrics"} <= paths
    assert len(routes) >= 20


def test_every_route_refuses_missing_forged_expired_and_unsigned_credentials(api):
    client, secret, routes, _ = api
    now = int(time.time())
    claims = {"iss": "pulse", "sub": "me", "role": "operator", "iat": now, "exp": now + 300}
    bad = {"none": {}, "forged": {"Authorization": "Bearer " + jwt.encode(claims, b"x" * 32, algorithm="HS256")},
           "expired": {"Authorization": token(secret, role="operator", iat=now - 100, exp=now - 10)},
           "unsigned": {"Authorization": "Bearer " + jwt.encode(claims, None, algorithm="none")},
           "unknown key": {"X-API-Key": "pk_0123456789ab_" + "x" * 43},
           "forged session cookie": {"Cookie": "pulse_session=" + jwt.encode(claims, b"y" * 32, algorithm="HS256")}}
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        for why, headers in bad.items():
            r = call(client, method, path, headers)
            assert r.status_code == 401, (why, method, path, r.status_code, r.text[:200])
            assert set(r.json()["error"]) == {"status", "code", "message", "request_id"}
            assert "Traceback" not in r.text


def test_role_routes_refuse_a_plain_users_token_and_an_apps_key(api):
    client, secret, routes, key = api
    guarded = [(m, p) for m, p in routes if any(p.startswith(pre) for pre in ROLE_PREFIXES)]
    assert guarded, "no role-guarded route found"
    for method, path in guarded:
        if (method, path) in PUBLIC:
            continue
        r = call(client, method, path, {"Authorization": token(secret, role="user")})
        assert r.status_code == 403 and "role" in r.json()["error"]["message"], (method, path, r.text[:200])
        if path != "/metrics":  # an app key granted the `metrics` read may scrape
            r = call(client, method, path, {"X-API-Key": key})
            assert r.status_code == 403, (method, path, r.status_code, r.text[:200])


def test_a_users_token_never_reads_another_users_data(api):
    client, secret, routes, _ = api
    own = [(m, p) for m, p in routes if m == "get" and ("{user_id}" in p or "{creator_id}" in p)
           and not any(p.startswith(pre) for pre in ROLE_PREFIXES)]
    assert len(own) >= 5
    for method, path in own:
        r = call(client, method, path, {"Authorization": token(secret, sub="me")})
        assert r.status_code == 403, (method, path, r.status_code, r.text[:200])


def test_only_the_subject_or_a_granted_app_requests_an_erasure(api):
    """A user token for another user, a moderator's or operator's token (staff, not data
    subjects) and an app key without the ``erasure-requests`` topic are refused before anything
    is published; so are the same callers reading an erasure's report."""
    client, secret, routes, _ = api
    assert ("post", "/v1/users/{user_id}/erasure") in routes
    assert ("get", "/v1/erasure-requests/{request_id}") in routes
    narrow = client.narrow_key
    def bearer(**claims):
        return {"Authorization": token(secret, **claims)}

    for headers, why in ((bearer(sub="me"), "its own user only"),
                         (bearer(sub="victim", role="moderator"), "no erasure power"),
                         (bearer(sub="victim", role="operator"), "no erasure power"),
                         ({"X-API-Key": narrow}, "not granted topic 'erasure-requests'")):
        r = client.post("/v1/users/victim/erasure", headers=headers, json={"legal_basis": "GDPR"})
        assert r.status_code == 403 and why in r.json()["error"]["message"], r.text
    for headers in (bearer(sub="victim", role="moderator"), {"X-API-Key": narrow}):
        r = client.get("/v1/erasure-requests/some-request", headers=headers)
        assert r.status_code == 403, r.text
