"""The API's access control and limits without servers (streams.api.auth, streams.api.limits):
keys stored hashed and 0600, grants, revocation seen by a running process, user tokens (expired,
forged, another algorithm, another secret), roles and what each principal may read, token
buckets and Retry-After."""
from __future__ import annotations

import json
import stat
import time

import jwt
import pytest

from streams.api.auth import (PUBLIC_TOPICS, READS, AuthError, GrantError, KeyStore, app_principal,
                              issue_token, parse_grants, token_secret, user_principal, verify_token)
from streams.api.limits import RateLimiter, TokenBucket
from streams.settings import Settings


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({"PULSE_HOME": str(tmp_path)})


def test_keys_are_stored_hashed_private_and_verified_in_constant_time(settings):
    store = KeyStore.for_settings(settings)
    key, rec = store.create("ios-app", "uploads,follows", ["feeds"])
    assert key.startswith(f"pk_{rec.key_id}_") and len(key) == 3 + 12 + 1 + 43
    raw = store.path.read_text()
    assert key not in raw and key.split("_", 2)[2] not in raw  # only the hash is kept
    assert json.loads(raw)["keys"][rec.key_id]["sha256"] == rec.sha256
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    got = KeyStore.for_settings(settings).verify(key)
    assert (got.name, got.topics, got.reads) == ("ios-app", ("uploads", "follows"), ("feeds",))
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")  # the right id, a wrong secret
    for bad, why in [(forged, "unknown API key"), ("pk_000000000000_" + "x" * 43, "unknown API key"),
                     ("hello", "not a Pulse API key"), ("", "not a Pulse API key")]:
        with pytest.raises(AuthError, match=why):
            store.verify(bad)


def test_a_revocation_reaches_a_running_process(settings, monkeypatch):
    import streams.api.auth as auth

    monkeypatch.setattr(auth, "RELOAD_S", 0.0)
    running = KeyStore.for_settings(settings)  # the API process's store
    key, rec = KeyStore.for_settings(settings).create("web", "uploads", "")
    assert running.verify(key).key_id == rec.key_id
    [revoked] = KeyStore.for_settings(settings).revoke("web")  # `pulse keys revoke` elsewhere
    assert revoked.revoked_at_ms is not None
    time.sleep(0.01)
    with pytest.raises(AuthError, match="revoked"):
        running.verify(key)
    with pytest.raises(GrantError, match="no active key"):
        running.revoke("web")
    assert [k.name for k in running.list()] == ["web"]


def test_grants_are_checked(settings):
    assert parse_grants("all", "all") == (PUBLIC_TOPICS, READS)
    assert parse_grants(" uploads, uploads ,follows", None) == (("uploads", "follows"), ())
    for topics, reads, why in [("moderation-verdicts", "", "cannot be granted"), ("review-decisions", "", "cannot be granted"),
                               ("", "everything", "not one of")]:
        with pytest.raises(GrantError, match=why):
            parse_grants(topics, reads)
    store = KeyStore.for_settings(settings)
    with pytest.raises(GrantError, match="grant the key something"):
        store.create("idle")
    with pytest.raises(GrantError, match="key name"):
        store.create("bad name!", "uploads")


def test_user_tokens_expire_and_forgeries_fail(settings):
    secret = token_secret(settings)
    assert stat.S_IMODE((settings.home / "api" / "token-secret").stat().st_mode) == 0o600
    assert token_secret(settings) == secret and len(secret) == 32  # created once
    good = issue_token(secret, "u1", ttl_s=60)
    assert verify_token(secret, good) == ("u1", "user")
    assert verify_token(secret, issue_token(secret, "m1", ttl_s=60, role="moderator")) == ("m1", "moderator")
    with pytest.raises(AuthError, match="expired"):
        verify_token(secret, issue_token(secret, "u1", ttl_s=1, now=time.time() - 10))
    now = int(time.time())
    claims = {"iss": "pulse", "sub": "u1", "role": "user", "iat": now, "exp": now + 60}
    forgeries = [
        jwt.encode(claims, b"x" * 32, algorithm="HS256"),  # another secret
        jwt.encode({**claims, "role": "moderator"}, b"y" * 32, algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),  # unsigned
        jwt.encode({**claims, "iss": "other"}, secret, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims.items() if k != "exp"}, secret, algorithm="HS256"),  # never expires
        jwt.encode({**claims, "role": "admin"}, secret, algorithm="HS256"),
        jwt.encode({**claims, "sub": ""}, secret, algorithm="HS256"),
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),  # a tampered signature
        "not.a.token", "",
    ]
    for t in forgeries:
        with pytest.raises(AuthError, match="invalid user token"):
            verify_token(secret, t)
    with pytest.raises(GrantError):
        issue_token(secret, "u1", ttl_s=60, role="root")
    with pytest.raises(GrantError):
        issue_token(secret, "u1", ttl_s=0)


def test_what_each_principal_may_do(settings):
    _, rec = KeyStore.for_settings(settings).create("web", "uploads", "feeds,trends")
    app = app_principal(rec)
    app.may_publish("uploads")
    app.may_read("feeds", "anyone")
    for call in (lambda: app.may_publish("follows"), lambda: app.may_read("notifications", "u1"),
                 lambda: app.may_read("posts")):
        with pytest.raises(GrantError, match="not granted"):
            call()
    user, mod = user_principal("u1", "user"), user_principal("m1", "moderator")
    for read in ("feeds", "notifications", "golden-moments", "posts"):
        user.may_read(read, "u1")
        with pytest.raises(GrantError, match="own"):
            user.may_read(read, "u2")
    user.may_read("trends")
    user.may_read("search")
    mod.may_read("posts", "u2")  # moderators read any post's verdicts
    with pytest.raises(GrantError, match="own"):
        mod.may_read("feeds", "u2")  # but not other users' feeds
    for read in ("feeds", "notifications", "creator-stats", "erasure-reports"):
        for role in ("moderator", "operator"):  # nor, as staff, the user's whose id their name is
            with pytest.raises(GrantError, match="staff identity"):
                user_principal("u1", role).may_read(read, "u1")
    with pytest.raises(GrantError, match="publishing needs an app"):
        user.may_publish("uploads")
    assert (app.limits_key, user.limits_key) == (f"key:{rec.key_id}", "user:u1")


def test_token_buckets_refill_and_say_when_to_retry():
    b = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)
    assert b.take(0.5) == 0.0 and b.take(0.5) == pytest.approx(0.5)
    assert b.take(100.0) == 0.0 and b.tokens == pytest.approx(2.0)  # capped at the burst
    clock = [0.0]
    limiter = RateLimiter({"key": (1.0, 2), "user": (0.1, 1)}, clock=lambda: clock[0], max_buckets=2)
    assert [limiter.check("key:a") for _ in range(3)] == [0, 0, 1]
    assert limiter.check("key:b") == 0  # buckets are per identity
    assert limiter.check("user:u") == 0 and limiter.check("user:u") == 10  # Retry-After in whole seconds
    clock[0] = 1.0
    assert limiter.check("key:a") == 0
    assert len(limiter._buckets) == 2  # least recently used dropped
    with pytest.raises(ValueError):
        TokenBucket(0, 1, 0.0)
