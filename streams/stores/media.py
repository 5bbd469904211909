"""The media store: where uploads' media is kept (``PULSE_MEDIA_ROOT``, default
``$PULSE_HOME/media``), content-addressed, and named by ``media:`` URIs relative to the store
(:mod:`streams.contracts.media`), so the log stays valid when the store moves.

>>> store = MediaStore.from_settings(settings)                         # doctest: +SKIP
>>> stored = store.put_stream(chunks, ext="jpg")        # POST /v1/media
>>> stored.uri
'media:sha256/9f/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.jpg'

Layout: ``sha256/<first two hex digits>/<sha256 hex>.<ext>``. Writing streams the bytes into a
temporary file inside the store (``.incoming/``), hashing and counting as it goes, refuses more
than ``max_bytes`` (``PULSE_MEDIA_MAX_BYTES``: larger media would only get a "too large" verdict),
then renames it into place (atomic on one filesystem), so a reader never sees a partial file and
storing the same bytes twice gives the same URI and one file. ``put_file`` stores a copy of a
local file (never a link: a stored file must not change under its hash): what ``pulse demo``
does with its photos and clips. A local directory is the only backend for now; an object store (S3) would keep
the same names and URIs.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from streams.contracts.media import MediaRoots

_EXT = re.compile(r"^[a-z0-9]{1,8}$")
_STORED_URI = re.compile(r"^media:(?P<rel>sha256/(?P<d>[0-9a-f]{2})/(?P=d)[0-9a-f]{62}\.[a-z0-9]{1,8})$")
CHUNK = 1 << 20


class MediaTooLarge(ValueError):
    """More bytes than the store accepts (``PULSE_MEDIA_MAX_BYTES``); the message gives the limit."""


@dataclass(frozen=True)
class StoredMedia:
    """A stored file: its ``media:`` URI, SHA-256 (hex), size in bytes and local path."""

    uri: str
    sha256: str
    size_bytes: int
    path: Path


def clean_ext(ext: str | None) -> str:
    """A file extension safe in a name: lower-case letters and digits, 1-8 of them, else ``bin``."""
    e = (ext or "").lower().lstrip(".")
    return e if _EXT.match(e) else "bin"


class MediaStore:
    """A content-addressed media directory (module docstring).

    Parameters
    ----------
    root:
        The store directory (created on first write).
    max_bytes:
        Largest file accepted, bytes.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)

    @classmethod
    def from_settings(cls, settings: Any) -> "MediaStore":
        """The store of ``PULSE_MEDIA_ROOT`` with the ``PULSE_MEDIA_MAX_BYTES`` limit."""
        return cls(settings.media_root, settings.media_max_bytes)

    def relative_name(self, sha256: str, ext: str) -> str:
        return f"sha256/{sha256[:2]}/{sha256}.{clean_ext(ext)}"

    def _place(self, tmp: Path, sha256: str, size: int, ext: str) -> StoredMedia:
        rel = self.relative_name(sha256, ext)
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)  # same bytes, same name: replacing is harmless
        return StoredMedia(MediaRoots(self.root).uri_for(rel), sha256, size, final)

    def delete(self, uri: str) -> bool:
        """Delete the stored file ``uri`` (``media:sha256/<2 hex>/<64 hex>.<ext>``, the only names
        the store gives); True when a file was deleted, False when there was none.

        Raises
        ------
        ValueError
            ``uri`` is not a name of this store's layout (nothing outside the store, no other
            scheme, no link is ever deleted).
        OSError
            The file exists but cannot be deleted.
        """
        m = _STORED_URI.match(uri) if isinstance(uri, str) else None
        if m is None:
            raise ValueError(f"{uri!r} is not a media store name (media:sha256/xx/<sha256>.<ext>)")
        path = self.root / m.group("rel")
        if path.is_symlink():
            raise ValueError(f"{uri!r} is a link, not a stored file")
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def writer(self, ext: str | None) -> "_Incoming":
        """A file being received: ``write`` chunks, then ``finish`` (or ``discard``)."""
        d = self.root / ".incoming"
        d.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=d, prefix="upload-")
        return _Incoming(self, os.fdopen(fd, "wb"), Path(name), clean_ext(ext))

    def put_stream(self, chunks: Iterable[bytes], ext: str | None) -> StoredMedia:
        """Store the bytes of ``chunks`` under their SHA-256.

        Raises
        ------
        MediaTooLarge
            More than ``max_bytes`` arrived (nothing is kept).
        ValueError
            No bytes at all.
        """
        incoming = self.writer(ext)
        try:
            for chunk in chunks:
                incoming.write(chunk)
            return incoming.finish()
        finally:
            incoming.discard()

    def put_file(self, path: Path) -> StoredMedia:
        """Store a copy of a local file (the extension is the file's own); a file already stored
        is not copied again.

        Raises
        ------
        MediaTooLarge
            The file is over ``max_bytes``.
        OSError
            It cannot be read.
        """
        path = Path(path)
        with open(path, "rb") as fh:
            return self.put_stream(iter(lambda: fh.read(CHUNK), b""), path.suffix)


class _Incoming:
    """A temporary file in the store's ``.incoming/`` that hashes and counts what is written."""

    def __init__(self, store: MediaStore, fh: Any, tmp: Path, ext: str) -> None:
        self.store, self.fh, self.tmp, self.ext = store, fh, tmp, ext
        self.digest, self.size = hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``; raises :class:`MediaTooLarge` past the store's limit."""
        self.size += len(chunk)
        if self.size > self.store.max_bytes:
            raise MediaTooLarge(f"media over the {self.store.max_bytes:,} byte limit (PULSE_MEDIA_MAX_BYTES)")
        self.digest.update(chunk)
        self.fh.write(chunk)

    def finish(self) -> StoredMedia:
        """Move the file into place under its hash; raises ``ValueError`` when it is empty."""
        self.fh.close()
        if self.size == 0:
            raise ValueError("empty media: the request body has no bytes")
        return self.store._place(self.tmp, self.digest.hexdigest(), self.size, self.ext)

    def discard(self) -> None:
        """Remove the temporary file (nothing after :meth:`finish`)."""
        self.fh.close()
        self.tmp.unlink(missing_ok=True)
