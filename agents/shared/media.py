"""Upload media checks shared by the gates: where an upload's media lies (inside the media roots
only, :mod:`streams.contracts.media`) and whether it may be decoded (size limit before any
decoding)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from models.fingerprints import MediaError
from streams.contracts.media import MediaRefused, MediaRoots

__all__ = ["MediaRefused", "MediaRoots", "check_media_size", "upload_media"]


def check_media_size(path: str | Path, max_bytes: int) -> None:
    """Refuse media over ``PULSE_MEDIA_MAX_BYTES`` before decoding it.

    Raises
    ------
    MediaError
        The file is larger than ``max_bytes`` (the message gives both sizes in MB).
    OSError
        The file cannot be read (missing, no permission).
    """
    size = os.path.getsize(path)
    if size > max_bytes:
        raise MediaError(f"file too large: {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB "
                         f"limit (PULSE_MEDIA_MAX_BYTES)")


def upload_media(record: dict[str, Any], max_bytes: int, roots: MediaRoots) -> str:
    """The local path of an IMAGE or VIDEO upload's media, inside ``roots`` and checked against
    the size limit.

    Raises
    ------
    MediaError
        No ``media_uri``, or the file is over ``max_bytes``.
    MediaRefused
        The ``media_uri`` does not resolve inside ``roots`` (:meth:`MediaRoots.resolve`).
    OSError
        The file cannot be read.
    """
    uri = record.get("media_uri")
    if not uri:
        raise MediaError(f"a {record['kind'].lower()} post without media_uri")
    path = roots.resolve(uri)
    check_media_size(path, max_bytes)
    return str(path)
