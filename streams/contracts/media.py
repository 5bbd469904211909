"""Where an event's ``media_uri`` may point: the media contract every reader of media keeps (the
gates, clip_ai, copyright registrations, training-set exports) and the HTTP API checks at ingest.

**Media only from storage roots.** An event's ``media_uri`` is input from outside (an app, the
HTTP API, anyone who can write to Kafka), so a worker never opens what it names directly: it is
resolved by :meth:`MediaRoots.resolve` against the configured roots, and anything else is
refused with a :class:`MediaRefused` whose message is the reason the gates put in their verdict
("bad media: ..."). The roots:

- the **media store** (``PULSE_MEDIA_ROOT``, default ``$PULSE_HOME/media``), where ``POST
  /v1/media`` (and ``pulse demo``) write content-addressed files
  (:mod:`streams.stores.media`) and whose URIs are ``media:<relative path>``
  (``media:sha256/ab/ab12....jpg``): store-relative, so the log stays valid when the store
  moves or a replay runs on another machine;
- **read-only roots** (``PULSE_MEDIA_READ_ROOTS``, ``os.pathsep``-separated), for media that
  already lies on a shared volume (the demo's photos and clips); ``file://`` URIs and absolute
  paths must fall inside the store or one of these.

Refused, each with its own reason: other schemes (``http(s)://`` is never fetched, and an
internal address such as ``http://127.0.0.1`` or ``http://169.254.169.254`` is named as one;
``s3://``, ``ftp://``, ``data:``, ...), ``file://`` URIs naming another host, relative paths,
any ``..`` component, NUL bytes, paths outside every root, and paths whose symlinks lead out of
the roots (the check is made on the fully resolved path, :func:`os.path.realpath`, which is what
is returned and then opened). Whether the file exists is the reader's business (a missing file
is an ``OSError`` with its own verdict).

What stays open: a process that can write inside a root can swap a checked path for a symlink
between the check and the open (the window is one function call); roots must be writable only by
Pulse (the store) or by nobody (read-only roots).
"""
from __future__ import annotations

import functools
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from models.fingerprints.errors import MediaError

MEDIA_SCHEME = "media"
"""Scheme of media-store URIs: ``media:<path relative to PULSE_MEDIA_ROOT>``."""
MAX_URI_CHARS = 4096
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_ROOTS_HINT = "the media roots (PULSE_MEDIA_ROOT, PULSE_MEDIA_READ_ROOTS)"


class MediaRefused(MediaError):
    """A ``media_uri`` that does not resolve inside the media roots; the message says why (it is
    the reason a gate's verdict gives). A :class:`~models.fingerprints.MediaError`, hence a
    ``ValueError``: every handler of bad media handles it."""


def _internal_host(host: str) -> bool:
    """Loopback, private, link-local, reserved or unspecified addresses, and ``localhost``."""
    h = host.strip("[]").lower()
    if h in ("localhost", "localhost.localdomain") or h.endswith(".localhost") or h.endswith(".internal"):
        return True
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        return False
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved
            or ip.is_unspecified or ip.is_multicast)


@dataclass(frozen=True)
class MediaRoots:
    """Where media may be read from (module docstring).

    Attributes
    ----------
    store:
        The media store directory (``PULSE_MEDIA_ROOT``), or None: then ``media:`` URIs are
        refused too.
    read_only:
        Further directories media may be read from (``PULSE_MEDIA_READ_ROOTS``).

    ``MediaRoots()`` has no root at all and refuses every URI.

    Examples
    --------
    >>> roots = MediaRoots(Path("/srv/media"))
    >>> roots.resolve("media:sha256/ab/ab12.jpg")                     # doctest: +SKIP
    PosixPath('/srv/media/sha256/ab/ab12.jpg')
    >>> roots.resolve("/etc/passwd")                                  # doctest: +SKIP
    Traceback (most recent call last):
    MediaRefused: media_uri '/etc/passwd' is outside the media roots (...)
    """

    store: Path | None = None
    read_only: tuple[Path, ...] = ()

    @classmethod
    def from_settings(cls, config: Any) -> "MediaRoots":
        """The roots a settings object names (``media_root``, ``media_read_roots``); None (no
        settings, e.g. a test calling ``process`` bare) gives no roots."""
        if config is None:
            return cls()
        return media_roots(getattr(config, "media_root", None),
                           tuple(getattr(config, "media_read_roots", ()) or ()))

    @functools.cached_property
    def _real_roots(self) -> tuple[Path, ...]:
        roots = ([self.store] if self.store is not None else []) + list(self.read_only)
        return tuple(Path(os.path.realpath(r)) for r in roots)

    def uri_for(self, relative: str) -> str:
        """The ``media:`` URI of a file at ``relative`` (POSIX, no ``..``) inside the store."""
        return f"{MEDIA_SCHEME}:{relative}"

    def resolve(self, uri: Any) -> Path:
        """The real path of the file ``uri`` names, inside the roots.

        ``uri``: ``media:<relative path>`` (the store), ``file:///abs/path`` or ``/abs/path``
        (inside the store or a read-only root).

        Raises
        ------
        MediaRefused
            Anything else; the message says why (module docstring).
        """
        if not isinstance(uri, str) or not uri:
            raise MediaRefused("no media_uri")
        shown = uri if len(uri) <= 120 else uri[:117] + "..."
        try:
            return self._resolve(uri, shown)
        except ValueError as exc:  # urllib's own (an unbalanced '[' in a host, ...)
            if isinstance(exc, MediaRefused):
                raise
            raise MediaRefused(f"media_uri {shown!r} is not a well-formed URI ({exc})") from None

    def _resolve(self, uri: str, shown: str) -> Path:
        if len(uri) > MAX_URI_CHARS:
            raise MediaRefused(f"media_uri is longer than {MAX_URI_CHARS} characters")
        if "\x00" in uri:
            raise MediaRefused(f"media_uri {shown!r} contains a NUL byte")
        m = _SCHEME.match(uri)
        scheme = m.group(1).lower() if m else ""
        if scheme == MEDIA_SCHEME:
            if self.store is None:
                raise MediaRefused(f"media_uri {shown!r} names the media store, and none is configured "
                                   f"(PULSE_MEDIA_ROOT)")
            relative = uri[len(m.group(0)):]
            if not relative or relative.startswith("/"):
                raise MediaRefused(f"media_uri {shown!r}: a media: URI is a path relative to the media "
                                   f"store, like media:sha256/ab/ab12...jpg")
            return self._inside(shown, relative.split("/"), Path(self.store) / relative)
        if scheme == "file":
            parts = urlsplit(uri)
            if parts.netloc not in ("", "localhost"):
                raise MediaRefused(f"media_uri {shown!r} names another host ({parts.netloc}); "
                                   f"Pulse reads media only from {_ROOTS_HINT}")
            if parts.query or parts.fragment:
                raise MediaRefused(f"media_uri {shown!r} has a query or fragment; a file URI names a file")
            path = unquote(parts.path)
            if "\x00" in path:
                raise MediaRefused(f"media_uri {shown!r} contains a NUL byte")
        elif scheme:
            raise MediaRefused(self._scheme_reason(shown, uri, scheme))
        else:
            path = uri
        if not path.startswith("/"):
            raise MediaRefused(f"media_uri {shown!r} is a relative path; use a media: URI from "
                               f"POST /v1/media or an absolute path inside {_ROOTS_HINT}")
        return self._inside(shown, path.split("/"), Path(path))

    @staticmethod
    def _scheme_reason(shown: str, uri: str, scheme: str) -> str:
        if scheme in ("http", "https"):
            host = urlsplit(uri).hostname or ""
            if _internal_host(host):
                return (f"media_uri {shown!r} names an internal address ({host}); Pulse never "
                        f"fetches media over the network")
            return (f"media_uri {shown!r}: remote media is not fetched; store it with POST /v1/media "
                    f"and use the media: URI it returns")
        return (f"media_uri scheme {scheme!r} of {shown!r} is not readable here; Pulse reads media "
                f"only from {_ROOTS_HINT} (media:, file:// or an absolute path)")

    def _inside(self, shown: str, components: list[str], path: Path) -> Path:
        if ".." in components:
            raise MediaRefused(f"media_uri {shown!r} contains '..'")
        roots = self._real_roots
        if not roots:
            raise MediaRefused(f"media_uri {shown!r} refused: no media roots are configured "
                               f"(PULSE_MEDIA_ROOT, PULSE_MEDIA_READ_ROOTS)")
        lexical = Path(os.path.normpath(path))
        real = Path(os.path.realpath(lexical))
        if any(_under(real, r) for r in roots):
            return real
        if any(_under(lexical, r) or _under(lexical, Path(os.path.normpath(p))) for r, p in
               zip(roots, self._configured())):
            raise MediaRefused(f"media_uri {shown!r} is a symlink (or lies under one) that leads out "
                               f"of {_ROOTS_HINT}")
        raise MediaRefused(f"media_uri {shown!r} is outside {_ROOTS_HINT}")

    def _configured(self) -> list[Path]:
        return ([Path(self.store)] if self.store is not None else []) + [Path(p) for p in self.read_only]


def _under(path: Path, root: Path) -> bool:
    """``path`` is strictly inside ``root`` (both absolute, normalised)."""
    return path != root and path.is_relative_to(root)


@functools.lru_cache(maxsize=64)
def media_roots(store: Path | str | None, read_only: tuple[Path | str, ...] = ()) -> MediaRoots:
    """A cached :class:`MediaRoots` (its resolved roots are computed once per process)."""
    return MediaRoots(None if store is None else Path(store), tuple(Path(p) for p in read_only))
