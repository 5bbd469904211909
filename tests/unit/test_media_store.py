"""The media store (streams.stores.media): content-addressed names, atomic placement, the size
limit, and the demo storing its uploads' media there (so workers read it from the store)."""
from __future__ import annotations

import hashlib

import pytest

from streams.contracts.media import MediaRoots
from streams.stores.media import MediaStore, MediaTooLarge, clean_ext
from streams.settings import Settings


def test_bytes_are_stored_under_their_hash_once_and_resolve_inside_the_store(tmp_path):
    store = MediaStore(tmp_path / "media", max_bytes=1000)
    a = store.put_stream([b"hello ", b"world"], "JPG")
    sha = hashlib.sha256(b"hello world").hexdigest()
    assert a.uri == f"media:sha256/{sha[:2]}/{sha}.jpg" and a.size_bytes == 11 and a.sha256 == sha
    assert a.path.read_bytes() == b"hello world" and oct(a.path.stat().st_mode & 0o777) == "0o644"
    assert store.put_stream([b"hello world"], "jpg") == a  # the same bytes: the same file
    assert MediaRoots(tmp_path / "media").resolve(a.uri) == a.path
    assert list((tmp_path / "media" / ".incoming").iterdir()) == []


def test_oversized_and_empty_bodies_leave_nothing_behind(tmp_path):
    store = MediaStore(tmp_path / "media", max_bytes=10)
    with pytest.raises(MediaTooLarge, match="PULSE_MEDIA_MAX_BYTES"):
        store.put_stream([b"x" * 6, b"y" * 6], "png")
    with pytest.raises(ValueError, match="empty"):
        store.put_stream([], "png")
    assert list((tmp_path / "media").rglob("*.png")) == []
    assert list((tmp_path / "media" / ".incoming").iterdir()) == []


def test_extensions_are_sanitised():
    assert [clean_ext(e) for e in ("JPG", ".mp4", "../x", "", None, "a" * 9, "we bp")] == \
        ["jpg", "mp4", "bin", "bin", "bin", "bin", "bin"]


def test_a_local_file_is_copied_in_and_the_demo_publishes_store_uris(tmp_path):
    from streams.demo.run import store_upload_media

    src = tmp_path / "photo.JPEG"
    src.write_bytes(b"\xff\xd8\xffdata")
    settings = Settings.from_env({"PULSE_HOME": str(tmp_path / "home")})
    stored = MediaStore.from_settings(settings).put_file(src)
    assert stored.path.read_bytes() == src.read_bytes() and stored.path.stat().st_ino != src.stat().st_ino
    events = [("uploads", {"post_id": "p1", "media_uri": src.as_uri()}),
              ("uploads", {"post_id": "p2", "media_uri": None}),
              ("copyright-references", {"reference_id": "w", "media_uri": src.as_uri()})]
    out = store_upload_media(settings, events)
    assert out[0] == ("uploads", {"post_id": "p1", "media_uri": stored.uri}) and out[1:] == events[1:]
    assert MediaRoots.from_settings(settings).resolve(out[0][1]["media_uri"]) == stored.path
    assert store_upload_media(settings, out) == out  # a re-run publishes identical events
