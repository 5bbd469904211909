"""Who may call the HTTP API: API keys for apps, signed user tokens, roles, and what each may do.

**API keys** (``pulse keys create NAME --topics ... --reads ...``) are for upstream apps and their
servers. A key is ``pk_<key id>_<secret>``: 12 hex characters that name it and 43 characters of
``secrets.token_urlsafe(32)`` (256 random bits). Only its SHA-256 is stored, in
``$PULSE_HOME/api/keys.json`` (mode 0600): a key is a high-entropy random token, so one round of
SHA-256 is what services such as GitHub and Stripe use (a slow password KDF protects guessable
secrets; nothing guesses 256 bits), compared in constant time (:func:`hmac.compare_digest`). The
file, not a Cassandra table: keys must work before any view exists, ``pulse keys`` needs no
running server, and a revocation reaches every API process reading the file within
:data:`RELOAD_S` (several hosts share the file as they share ``PULSE_HOME``). Each key is granted
the topics it may publish to (:data:`PUBLIC_TOPICS` only) and the reads it may make
(:data:`READS`); the events it publishes carry its name as ``producer``.

**User tokens** (``pulse token USER_ID [--ttl S] [--role user|moderator]``) are JWTs (RFC 7519)
signed with HS256 by PyJWT, with ``iss`` ``pulse``, ``sub`` the user id, ``role``, ``iat`` and
``exp`` (all required), under a 256-bit secret in ``$PULSE_HOME/api/token-secret`` (created 0600
on first use; every API process that verifies tokens reads the same file). HS256 because the
signer and the verifiers are the same operator's processes: an asymmetric scheme (EdDSA) would
only matter if third parties verified tokens. A user token reads only its own feed,
notifications and golden moments and its own posts' status, plus the public reads (trends, search
among published posts); it publishes nothing (events come from apps). **Roles**: ``user``;
``moderator``, which may also read any post's status and verdicts and use the review endpoints
(:mod:`streams.api.review`); ``operator``, for the operator dashboard. Moderators and operators
log in to the pages with a password (:mod:`streams.api.accounts`); the session cookie holds a
token of this kind (:mod:`streams.api.session`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PUBLIC_TOPICS = ("uploads", "interactions", "follows", "signups", "notification-feedback",
                 "copyright-references", "erasure-requests")
"""Topics upstream apps publish to: what people do (uploads, interactions, follows, sign-ups,
reactions to notifications), rights holders' registrations, and erasure requests (an app's
account-deletion or privacy-request service; a user requests their own through
``POST /v1/users/{user_id}/erasure``). The rest are written by Pulse's agents (verdicts, feeds,
...) or by moderators through the review round trip (``review-decisions``, whose claim a raw
event would skip). A key created with topics ``all`` is granted every one of these, erasure
included: grant an ordinary app its topics by name."""
READS = ("feeds", "notifications", "search", "trends", "golden-moments", "posts", "creator-stats",
         "erasure-reports", "metrics")
"""What a key may be granted to read: ``GET /v1/feeds/...``, ``/v1/users/{id}/notifications``,
``/v1/search``, ``/v1/trends``, ``/v1/golden-moments/...``, ``/v1/posts/{id}``,
``/v1/creators/{id}/stats``, ``/v1/erasure-requests/{id}`` (an erasure's report), and
``/metrics`` (Prometheus: :mod:`streams.api.ops`)."""
OWN_READS = frozenset({"feeds", "notifications", "golden-moments", "creator-stats", "erasure-reports"})
"""Reads a user token may make of its own user only."""
PUBLIC_READS = frozenset({"trends", "search"})
"""Reads any valid user token may make."""
ROLES = ("user", "moderator", "operator")
ISSUER = "pulse"
ALGORITHM = "HS256"
RELOAD_S = 1.0
"""How often an API process looks at the key file's modification time (seconds)."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEY = re.compile(r"^pk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class AuthError(ValueError):
    """A credential that is missing, malformed, unknown, revoked, expired or forged (HTTP 401);
    the message says which, never why a forged one failed in detail."""


class GrantError(ValueError):
    """A key or token that is valid but not allowed this (HTTP 403), or a grant that cannot be
    made (``pulse keys create``); the message says what is missing."""


def api_dir(settings: Any) -> Path:
    """``$PULSE_HOME/api``: the key file and the token secret."""
    return Path(settings.home) / "api"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (directory 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ keys


@dataclass(frozen=True)
class ApiKey:
    """A stored key: ``key_id`` (public), ``name`` (the app; the ``producer`` of its events),
    ``sha256`` of the whole key, grants, creation and revocation times (UTC epoch ms)."""

    key_id: str
    name: str
    sha256: str
    topics: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    created_at_ms: int = 0
    revoked_at_ms: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at_ms is None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_grants(topics: str | list[str] | None, reads: str | list[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``("uploads,follows", "feeds")`` -> checked, de-duplicated tuples; ``all`` grants every one.

    Raises :class:`GrantError` naming an unknown topic or read and listing the valid ones.
    """
    def split(v: Any) -> list[str]:
        items = v.split(",") if isinstance(v, str) else list(v or [])
        return list(dict.fromkeys(i.strip() for i in items if i and i.strip()))

    t, r = split(topics), split(reads)
    t = list(PUBLIC_TOPICS) if t == ["all"] else t
    r = list(READS) if r == ["all"] else r
    bad_t = [x for x in t if x not in PUBLIC_TOPICS]
    if bad_t:
        raise GrantError(f"topic {bad_t[0]!r} cannot be granted; apps publish to {', '.join(PUBLIC_TOPICS)}")
    bad_r = [x for x in r if x not in READS]
    if bad_r:
        raise GrantError(f"read {bad_r[0]!r} is not one of {', '.join(READS)}")
    return tuple(t), tuple(r)


class WatchedFile:
    """A file of records that API processes keep in memory and re-read when its modification
    time changes, looked at most every :data:`RELOAD_S` (so a change made by a command elsewhere
    reaches every running process within that time). Subclasses define ``_load() -> dict``;
    ``_current()`` returns the cached dict. Thread-safe (``self._lock``)."""

    def __init__(self, path: Path, clock=time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict = {}
        self._mtime: int | None = None
        self._checked = float("-inf")

    def _load(self) -> dict:
        raise NotImplementedError

    def _current(self) -> dict:
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= RELOAD_S:
                self._checked = now
                try:
                    mtime = self.path.stat().st_mtime_ns
                except FileNotFoundError:
                    mtime = None
                if mtime != self._mtime:
                    self._cached, self._mtime = self._load(), mtime
            return self._cached


class KeyStore(WatchedFile):
    """The API keys of one ``PULSE_HOME`` (``$PULSE_HOME/api/keys.json``; module docstring).

    ``create``, ``revoke`` and ``list`` are for ``pulse keys``; ``verify`` is for the API, which
    re-reads the file when its modification time changes (checked at most every
    :data:`RELOAD_S`). Thread-safe.
    """

    @classmethod
    def for_settings(cls, settings: Any) -> "KeyStore":
        return cls(api_dir(settings) / "keys.json")

    def _load(self) -> dict[str, ApiKey]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {k: ApiKey(**{**v, "topics": tuple(v.get("topics", ())), "reads": tuple(v.get("reads", ()))})
                for k, v in raw.get("keys", {}).items()}

    def _save(self, keys: dict[str, ApiKey]) -> None:
        body = {"keys": {k: {**asdict(v), "topics": list(v.topics), "reads": list(v.reads)}
                         for k, v in keys.items()}}
        _write_private(self.path, json.dumps(body, indent=2, sort_keys=True).encode())

    def create(self, name: str, topics: Any = (), reads: Any = ()) -> tuple[str, ApiKey]:
        """A new key for app ``name``: ``(the key, shown once; its stored record)``.

        Raises :class:`GrantError` for a bad name, an unknown grant, or no grant at all.
        """
        if not _NAME.match(name or ""):
            raise GrantError(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (it becomes "
                             f"the producer of the app's events)")
        t, r = parse_grants(topics, reads)
        if not t and not r:
            raise GrantError("grant the key something: --topics and/or --reads")
        key_id = secrets.token_hex(6)
        key = f"pk_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id, name, _digest(key), t, r, int(self._clock() * 1000))
        with self._lock:
            keys = self._load()
            keys[key_id] = record
            self._save(keys)
            self._checked = float("-inf")
        return key, record

    def revoke(self, name_or_id: str) -> list[ApiKey]:
        """Revoke the active keys whose id or name is ``name_or_id``; returns them.

        Raises :class:`GrantError` when none matches.
        """
        with self._lock:
            keys = self._load()
            hit = [k for k in keys.values() if k.active and name_or_id in (k.key_id, k.name)]
            if not hit:
                raise GrantError(f"no active key named or with id {name_or_id!r} (`pulse keys list`)")
            now = int(self._clock() * 1000)
            for k in hit:
                keys[k.key_id] = ApiKey(**{**asdict(k), "revoked_at_ms": now})
            self._save(keys)
            self._checked = float("-inf")
            return [keys[k.key_id] for k in hit]

    def list(self) -> list[ApiKey]:
        """Every key, active or revoked, oldest first."""
        return sorted(self._load().values(), key=lambda k: (k.created_at_ms, k.key_id))

    def verify(self, key: str) -> ApiKey:
        """The active key record of ``key``.

        Raises :class:`AuthError`: not a Pulse key, unknown, revoked.
        """
        m = _KEY.match(key or "")
        if m is None:
            raise AuthError("not a Pulse API key (they look like pk_<12 hex>_<43 characters>)")
        record = self._current().get(m.group(1))
        if record is None or not hmac.compare_digest(record.sha256, _digest(key)):
            raise AuthError("unknown API key")
        if not record.active:
            raise AuthError("this API key was revoked")
        return record


# ---------------------------------------------------------------------------------- tokens


def token_secret(settings: Any, *, create: bool = True) -> bytes:
    """The HS256 secret of ``$PULSE_HOME/api/token-secret`` (32 random bytes, created 0600 when
    missing and ``create``).

    Raises :class:`AuthError` when it is missing and not ``create``, or not 32+ bytes.
    """
    path = api_dir(settings) / "token-secret"
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise AuthError("no token secret yet: `pulse token` creates it") from None
        _write_private(path, secrets.token_bytes(32))
        secret = path.read_bytes()
    if len(secret) < 32:
        raise AuthError(f"{path} holds fewer than 32 bytes; delete it to make a new secret")
    return secret


def issue_token(secret: bytes, user_id: str, *, ttl_s: int, role: str = "user",
                now: float | None = None) -> str:
    """A signed user token for ``user_id`` valid ``ttl_s`` seconds from ``now`` (default: the
    wall clock).

    Raises :class:`GrantError` for an unknown role, an empty user id or a ttl under 1 s.
    """
    import jwt

    if role not in ROLES:
        raise GrantError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not user_id:
        raise GrantError("a token needs a user id")
    if ttl_s < 1:
        raise GrantError("--ttl must be at least 1 second")
    t = int(time.time() if now is None else now)
    return jwt.encode({"iss": ISSUER, "sub": user_id, "role": role, "iat": t, "exp": t + int(ttl_s)},
                      secret, algorithm=ALGORITHM)


def verify_token(secret: bytes, token: str) -> tuple[str, str]:
    """``(user_id, role)`` of a valid token.

    Raises :class:`AuthError`: expired, not signed with this secret, another algorithm (``none``
    included), a missing claim, another issuer, an unknown role.
    """
    import jwt

    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["exp", "iat", "sub", "iss"]})
    except jwt.ExpiredSignatureError:
        raise AuthError("the user token has expired; get a new one") from None
    except jwt.PyJWTError:
        raise AuthError("invalid user token") from None
    role = claims.get("role", "user")
    if role not in ROLES or not isinstance(claims["sub"], str) or not claims["sub"]:
        raise AuthError("invalid user token")
    return claims["sub"], role


# ------------------------------------------------------------------------------- principals


@dataclass(frozen=True)
class Principal:
    """Who is calling: an app (``kind`` ``app``: its key's name, id and grants) or a user
    (``kind`` ``user``: ``name`` is the user id, ``role`` user or moderator)."""

    kind: str
    name: str
    key_id: str | None = None
    topics: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    role: str | None = None
    limits_key: str = field(default="")

    def may_publish(self, topic: str) -> None:
        """Raises :class:`GrantError` unless this is an app key granted ``topic``."""
        if self.kind != "app":
            raise GrantError("publishing needs an app's API key (X-API-Key); user tokens read only")
        if topic not in self.topics:
            granted = ", ".join(self.topics) or "none"
            raise GrantError(f"API key {self.name!r} is not granted topic {topic!r} (granted: {granted})")

    def may_read(self, read: str, owner: str | None = None) -> None:
        """Raises :class:`GrantError` unless this principal may make ``read`` of data belonging to
        user ``owner`` (None: not a user's own data)."""
        if self.kind == "app":
            if read not in self.reads:
                granted = ", ".join(self.reads) or "none"
                raise GrantError(f"API key {self.name!r} is not granted the {read!r} read (granted: {granted})")
            return
        if read in PUBLIC_READS:
            return
        # ownership counts for role ``user`` only: moderator and operator accounts are staff
        # identities whose names may equal a platform user's id, never that user
        own = self.role == "user" and owner == self.name
        if read == "posts":
            if self.role == "moderator" or own:
                return
            raise GrantError("a user token reads only the status of the user's own posts (moderators: any)")
        if read in OWN_READS and own:
            return
        if owner == self.name:
            raise GrantError(f"a {self.role}'s login or token is a staff identity and reads no user's own "
                             f"{read}; use that user's token (role user)")
        raise GrantError(f"a user token reads only its own user's {read} (this token is for user {self.name!r})")


def app_principal(key: ApiKey) -> Principal:
    return Principal("app", key.name, key.key_id, key.topics, key.reads, limits_key=f"key:{key.key_id}")


def user_principal(user_id: str, role: str) -> Principal:
    return Principal("user", user_id, role=role, limits_key=f"user:{user_id}")
