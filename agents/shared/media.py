"""Upload media checks shared by the gates: where an upload's media lies and whether it may be
decoded (size limit before any decoding)."""
from __future__ import annotations

from typing import Any


def media_path(uri: str | None) -> str | None:
    """A local path from an upload's ``media_uri`` (``file://`` URI or plain path).

    Raises
    ------
    ValueError
        A scheme Pulse cannot read here (``http``, ``s3``, ...): the message says so.
    """
    if not uri:
        return None
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(uri).path)
    if "://" in uri:
        raise ValueError(f"media_uri scheme of {uri!r} is not supported (use file:// or a path)")
    return uri


def check_media_size(path: str, max_bytes: int) -> None:
    """Refuse media over ``PULSE_MEDIA_MAX_BYTES`` before decoding it.

    Raises
    ------
    MediaError
        The file is larger than ``max_bytes`` (the message gives both sizes in MB).
    OSError
        The file cannot be read (missing, no permission).
    """
    import os

    from models.fingerprints import MediaError

    size = os.path.getsize(path)
    if size > max_bytes:
        raise MediaError(f"file too large: {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB "
                         f"limit (PULSE_MEDIA_MAX_BYTES)")


def upload_media(record: dict[str, Any], max_bytes: int) -> str:
    """The local path of an IMAGE or VIDEO upload's media, checked against the size limit.

    Raises
    ------
    MediaError
        No ``media_uri``, or the file is over ``max_bytes``.
    ValueError
        A ``media_uri`` scheme Pulse cannot read (:func:`media_path`).
    OSError
        The file cannot be read.
    """
    from models.fingerprints import MediaError

    path = media_path(record.get("media_uri"))
    if path is None:
        raise MediaError(f"a {record['kind'].lower()} post without media_uri")
    check_media_size(path, max_bytes)
    return path
