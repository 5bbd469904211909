"""Moderators' and operators' accounts and their browser sessions without servers
(streams.api.accounts, streams.api.session, the cookie path of streams.api.app.authenticate):
scrypt hashes in a 0600 file, wrong passwords and unknown names refused alike, removal seen by a
running process, the session and CSRF cookies, the CSRF rule, roles, and bad login bodies."""
from __future__ import annotations

import hashlib
import json
import stat
import time

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from streams.api.accounts import SCRYPT_N, AccountStore, hash_password
from streams.api.app import create_app, require_role
from streams.api.auth import AuthError, GrantError, issue_token, token_secret, verify_token
from streams.settings import Settings

PASSWORD = "correct horse battery staple"


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({"PULSE_HOME": str(tmp_path)})


def test_passwords_are_stored_as_salted_scrypt_hashes_in_a_private_file(settings):
    store = AccountStore.for_settings(settings)
    a = store.add("alice", PASSWORD)
    b = store.add("bob", PASSWORD, role="operator")
    raw = store.path.read_text()
    assert PASSWORD not in raw and stat.S_IMODE(store.path.stat().st_mode) == 0o600
    stored = json.loads(raw)["accounts"]["alice"]
    assert (stored["n"], stored["r"], stored["p"]) == (SCRYPT_N, 8, 1) and len(bytes.fromhex(stored["salt"])) == 16
    expected = hashlib.scrypt(PASSWORD.encode(), salt=bytes.fromhex(a.salt), n=2**14, r=8, p=1, dklen=32)
    assert stored["key"] == expected.hex() == hash_password(PASSWORD, bytes.fromhex(a.salt)).hex()
    assert a.salt != b.salt and a.key != b.key  # same password, different salts
    assert AccountStore.for_settings(settings).verify("alice", PASSWORD).role == "moderator"
    assert [(x.name, x.role) for x in store.list()] == [("alice", "moderator"), ("bob", "operator")]


def test_a_wrong_password_and_an_unknown_name_get_the_same_refusal(settings):
    store = AccountStore.for_settings(settings)
    store.add("alice", PASSWORD)
    messages = set()
    for name, password in [("alice", PASSWORD + "!"), ("alice", ""), ("mallory", PASSWORD), ("", ""),
                           ("alice", "x" * 5000), (None, None)]:
        with pytest.raises(AuthError) as exc:
            store.verify(name, password)
        messages.add(str(exc.value))
    assert messages == {"wrong account name or password"}


def test_bad_accounts_are_refused_with_the_reason(settings):
    store = AccountStore.for_settings(settings)
    for name, password, role, why in [("alice", "short", "moderator", "at least 8"),
                                      ("../x", PASSWORD, "moderator", "account name"),
                                      ("carol", PASSWORD, "admin", "not one of moderator, operator")]:
        with pytest.raises(GrantError, match=why):
            store.add(name, password, role)
    store.add("alice", PASSWORD)
    with pytest.raises(GrantError, match="remove alice"):
        store.add("alice", PASSWORD)
    with pytest.raises(GrantError, match="no account"):
        store.remove("zed")
    assert [p.name for p in store.path.parent.iterdir()] == ["accounts.json"]  # no temporary file left


def test_a_removal_reaches_a_running_process(settings, monkeypatch):
    import streams.api.auth as auth

    monkeypatch.setattr(auth, "RELOAD_S", 0.0)
    running = AccountStore.for_settings(settings)
    AccountStore.for_settings(settings).add("alice", PASSWORD)
    assert running.get("alice") is not None
    AccountStore.for_settings(settings).remove("alice")
    time.sleep(0.01)
    assert running.get("alice") is None
    with pytest.raises(AuthError):
        running.verify("alice", PASSWORD)


# ------------------------------------------------------------------------------ sessions


def client(settings):
    app = create_app(settings)

    @app.post("/test/moderate")
    def moderate(p=Depends(require_role("moderator"))):
        return {"who": p.name}

    @app.get("/test/operate")
    def operate(p=Depends(require_role("operator"))):
        return {"who": p.name}

    return TestClient(app, raise_server_exceptions=False)


def error(r, status):
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["status"] == status and body["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text
    return body["message"]


def test_a_login_sets_an_httponly_strict_session_and_a_csrf_cookie(settings):
    AccountStore.for_settings(settings).add("alice", PASSWORD)
    c = client(settings)
    r = c.post("/v1/session", data={"name": "alice", "password": PASSWORD})  # a form
    assert r.status_code == 200, r.text
    cookies = {h.split("=", 1)[0]: h.lower() for h in r.headers.get_list("set-cookie")}
    assert "httponly" in cookies["pulse_session"] and "samesite=strict" in cookies["pulse_session"]
    assert "path=/" in cookies["pulse_session"] and "max-age=28800" in cookies["pulse_session"]
    assert "httponly" not in cookies["pulse_csrf"] and "samesite=strict" in cookies["pulse_csrf"]
    assert r.json()["role"] == "moderator" and r.json()["csrf"] == c.cookies["pulse_csrf"]
    assert verify_token(token_secret(settings), c.cookies["pulse_session"]) == ("alice", "moderator")
    assert c.get("/v1/session").json() == {"name": "alice", "kind": "user", "role": "moderator"}

    # the CSRF rule: a cookie-authenticated POST needs the header equal to the cookie
    assert "X-Pulse-CSRF" in error(c.post("/test/moderate"), 403)
    error(c.post("/test/moderate", headers={"X-Pulse-CSRF": "forged"}), 403)
    r = c.post("/test/moderate", headers={"X-Pulse-CSRF": c.cookies["pulse_csrf"]})
    assert r.status_code == 200 and r.json() == {"who": "alice"}
    assert "role operator" in error(c.get("/test/operate"), 403)

    r = c.delete("/v1/session")
    assert r.status_code == 200 and "pulse_session" not in c.cookies
    error(c.get("/v1/session"), 401)


def test_json_logins_wrong_passwords_and_bad_bodies(settings):
    AccountStore.for_settings(settings).add("olga", PASSWORD, role="operator")
    c = client(settings)
    r = c.post("/v1/session", json={"name": "olga", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["role"] == "operator"
    assert c.get("/test/operate").json() == {"who": "olga"}
    assert "role moderator" in error(c.post("/test/moderate", headers={"X-Pulse-CSRF": c.cookies["pulse_csrf"]}), 403)
    fresh = client(settings)
    assert "wrong account name or password" in error(fresh.post("/v1/session", json={"name": "olga", "password": "nope-nope"}), 401)
    error(fresh.post("/v1/session", json={"name": "nobody", "password": PASSWORD}), 401)
    assert "pulse_session" not in fresh.cookies
    for body, headers, status in [(b"{nope", {"Content-Type": "application/json"}, 400),
                                  (b"[1]", {"Content-Type": "application/json"}, 422),
                                  (b'{"name": 3, "password": null}', {"Content-Type": "application/json"}, 422),
                                  (b"name=olga", {"Content-Type": "application/x-www-form-urlencoded"}, 422),
                                  (b"\xff\xfe=\xff", {"Content-Type": "application/x-www-form-urlencoded"}, 400),
                                  (b"x" * 10000, {"Content-Type": "application/json"}, 413),
                                  (b"name=olga", {"Content-Type": "text/plain"}, 415),
                                  (b"[" * 100000, {"Content-Type": "application/json"}, 413)]:
        error(fresh.post("/v1/session", content=body, headers=headers), status)
    error(fresh.post("/test/moderate"), 401)


def test_failed_logins_are_rate_limited(tmp_path):
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_API_USER_RATE": "0.01",
                                  "PULSE_API_USER_BURST": "3"})
    AccountStore.for_settings(settings).add("alice", PASSWORD)
    c = client(settings)
    codes = [c.post("/v1/session", json={"name": "alice", "password": f"guess-{i:04d}"}).status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]
    r = c.post("/v1/session", json={"name": "alice", "password": PASSWORD})
    assert "too many login attempts" in error(r, 429) and int(r.headers["retry-after"]) >= 1


def test_a_session_ends_when_its_account_is_removed_or_the_token_is_not_a_session(settings, monkeypatch):
    import streams.api.auth as auth

    monkeypatch.setattr(auth, "RELOAD_S", 0.0)
    store = AccountStore.for_settings(settings)
    store.add("alice", PASSWORD)
    c = client(settings)
    assert c.post("/v1/session", json={"name": "alice", "password": PASSWORD}).status_code == 200
    store.remove("alice")
    time.sleep(0.01)
    assert "no longer exists" in error(c.get("/v1/session"), 401)
    # a moderator bearer token of someone without an account works as a header, not as a cookie
    token = issue_token(token_secret(settings), "bob", ttl_s=60, role="moderator")
    other = client(settings)
    assert other.get("/v1/session", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "bob"
    other.cookies.set("pulse_session", token)
    error(other.get("/v1/session"), 401)
    other.cookies.set("pulse_session", "garbage")
    assert "log in again" in error(other.get("/v1/session"), 401)


# ----------------------------------------------------------------------------- the CLI


def pulse(settings, *args, input=None):
    from typer.testing import CliRunner

    from streams.cli import app

    result = CliRunner().invoke(app, ["moderators", *args], input=input,
                                env={"PULSE_HOME": str(settings.home), "COLUMNS": "100"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_pulse_moderators_add_list_remove(settings):
    r = pulse(settings, "add", "alice", input=f"{PASSWORD}\n{PASSWORD}\n")  # the hidden prompt, twice
    assert r.exit_code == 0, r.output
    assert PASSWORD not in r.stdout  # hidden input is not echoed
    r = pulse(settings, "add", "olga", "--role", "operator", "--password-stdin", input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    store = AccountStore.for_settings(settings)
    assert store.verify("alice", PASSWORD).role == "moderator" and store.verify("olga", PASSWORD).role == "operator"
    r = pulse(settings, "add", "bob", input="one-password\nanother-one\none-password\none-password\n")
    assert r.exit_code == 0 and "do not match" in r.output.lower()  # asked again on a mismatch
    listed = json.loads(pulse(settings, "list", "--json").stdout)
    assert [(a["name"], a["role"]) for a in listed] == [("alice", "moderator"), ("bob", "moderator"), ("olga", "operator")]
    assert "key" not in listed[0] and "salt" not in listed[0]
    r = pulse(settings, "add", "alice", "--password-stdin", input=PASSWORD + "\n")
    assert r.exit_code == 1 and "remove alice" in r.stderr and "Traceback" not in r.output
    r = pulse(settings, "add", "eve", "--password-stdin", input="short\n")
    assert r.exit_code == 1 and "at least 8" in r.stderr
    assert pulse(settings, "remove", "bob").exit_code == 0
    r = pulse(settings, "remove", "bob")
    assert r.exit_code == 1 and "no account 'bob'" in r.stderr
    assert [a.name for a in store.list()] == ["alice", "olga"]
