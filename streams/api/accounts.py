"""The people who log in to the API's pages: moderators and operators, with passwords.

``pulse moderators add NAME [--role moderator|operator]`` stores an account in
``$PULSE_HOME/api/accounts.json`` (mode 0600, written atomically like the key file); ``POST
/v1/session`` checks a name and password against it and sets the session cookie
(:mod:`streams.api.session`). Apps use API keys and their users signed tokens
(:mod:`streams.api.auth`); accounts are for the few people who work on the review queue and the
operator dashboard.

**Passwords** are stored as scrypt hashes (RFC 7914; :func:`hashlib.scrypt`) with the cost
parameters ``N = 2**14, r = 8, p = 1`` (RFC 7914 section 2's interactive-login example; 16 MiB of
memory and about 50 ms a check on one core) and a 16-byte random salt per account, giving a
32-byte key. The parameters are stored with each hash, so raising them later keeps old hashes
verifiable. A check takes the same work whether or not the name exists (an unknown name is
checked against a dummy hash), and the keys are compared in constant time
(:func:`hmac.compare_digest`), so neither timing nor the message tells which names exist.

The API re-reads the file when its modification time changes (at most every
:data:`~streams.api.auth.RELOAD_S`): a removed account's sessions stop working within a second.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from streams.api import auth
from streams.api.auth import AuthError, GrantError, _write_private, api_dir

ACCOUNT_ROLES = ("moderator", "operator")
"""Roles an account may have: ``moderator`` (the review queue and its endpoints) and
``operator`` (the operator dashboard)."""
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""scrypt cost parameters (RFC 7914): CPU/memory cost, block size, parallelism."""
SALT_BYTES = 16
KEY_BYTES = 32
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
_NAME_CHARS = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass(frozen=True)
class Account:
    """A stored account: ``name`` (also the reviewer id of its decisions), ``role``, the scrypt
    ``salt`` and ``key`` (hex), its cost parameters ``n``, ``r``, ``p``, and the creation time
    (UTC epoch ms)."""

    name: str
    role: str
    salt: str
    key: str
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P
    created_at_ms: int = 0


def hash_password(password: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
    """The 32-byte scrypt key of ``password`` (UTF-8) under ``salt`` (RFC 7914)."""
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES,
                          maxmem=256 * r * n + 1024 * 1024)


_DUMMY = Account("", "moderator", "00" * SALT_BYTES, "00" * KEY_BYTES)
"""Checked against when a name is unknown, so that a miss costs what a hit costs."""


def check_password(password: str) -> None:
    """Raises :class:`GrantError` for a password shorter than :data:`MIN_PASSWORD_CHARS` or
    longer than :data:`MAX_PASSWORD_CHARS` characters."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise GrantError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise GrantError(f"the password must have at most {MAX_PASSWORD_CHARS} characters")


class AccountStore(auth.WatchedFile):
    """The accounts of one ``PULSE_HOME`` (``$PULSE_HOME/api/accounts.json``; module docstring).

    ``add``, ``remove`` and ``list`` are for ``pulse moderators``; ``verify`` (a login) and
    ``get`` (a session's account, cached by the file's modification time) for the API.
    Thread-safe.
    """

    @classmethod
    def for_settings(cls, settings: Any) -> "AccountStore":
        return cls(api_dir(settings) / "accounts.json")

    def _load(self) -> dict[str, Account]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {name: Account(**v) for name, v in raw.get("accounts", {}).items()}

    def _save(self, accounts: dict[str, Account]) -> None:
        body = {"accounts": {name: asdict(a) for name, a in sorted(accounts.items())}}
        _write_private(self.path, json.dumps(body, indent=2, sort_keys=True).encode())
        self._checked = float("-inf")

    def add(self, name: str, password: str, role: str = "moderator") -> Account:
        """Store a new account ``name`` with ``role`` and ``password``; returns its record.

        Raises :class:`GrantError`: a bad name or role, a password that is too short or too long,
        a name already taken (``pulse moderators remove NAME`` first).
        """
        if not auth._NAME.match(name or ""):
            raise GrantError(f"account name {name!r}: use {_NAME_CHARS}")
        if role not in ACCOUNT_ROLES:
            raise GrantError(f"role {role!r} is not one of {', '.join(ACCOUNT_ROLES)}")
        check_password(password)
        salt = secrets.token_bytes(SALT_BYTES)
        record = Account(name, role, salt.hex(), hash_password(password, salt).hex(),
                         created_at_ms=int(self._clock() * 1000))
        with self._lock:
            accounts = self._load()
            if name in accounts:
                raise GrantError(f"account {name!r} exists (role {accounts[name].role}); "
                                 f"`pulse moderators remove {name}` first to replace it")
            accounts[name] = record
            self._save(accounts)
        return record

    def remove(self, name: str) -> Account:
        """Delete account ``name`` (its open sessions end within :data:`~streams.api.auth.RELOAD_S`); returns it.

        Raises :class:`GrantError` when there is no such account.
        """
        with self._lock:
            accounts = self._load()
            if name not in accounts:
                raise GrantError(f"no account {name!r} (`pulse moderators list`)")
            record = accounts.pop(name)
            self._save(accounts)
        return record

    def list(self) -> list[Account]:
        """Every account, by name."""
        return [a for _, a in sorted(self._load().items())]

    def get(self, name: str) -> Account | None:
        """The current record of ``name``, or None (re-read when the file changed)."""
        return self._current().get(name)

    def verify(self, name: str, password: str) -> Account:
        """The account ``name`` if ``password`` is its password.

        Raises :class:`AuthError` with the same message whether the name is unknown or the
        password wrong (module docstring: the work done is the same too).
        """
        record = self._current().get(name) if isinstance(name, str) else None
        check = record or _DUMMY
        given = password if isinstance(password, str) and len(password) <= MAX_PASSWORD_CHARS else ""
        key = hash_password(given, bytes.fromhex(check.salt), check.n, check.r, check.p)
        if not hmac.compare_digest(key, bytes.fromhex(check.key)) or record is None:
            raise AuthError("wrong account name or password")
        return record
