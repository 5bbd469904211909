"""Media only from storage roots (agents.shared.media.MediaRoots): what resolves, and what is
refused with which reason — other paths, '..', symlinks out of a root, other schemes, internal
addresses — plus a property test that whatever resolves lies inside a root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agents.shared.media import upload_media
from streams.contracts.media import MediaRefused, MediaRoots
from models.fingerprints import MediaError
from streams.settings import Settings, SettingsError


@pytest.fixture
def tree(tmp_path):
    """store/ (the media store), shared/ (a read-only root), outside/ (neither), and links."""
    store, shared, outside = tmp_path / "store", tmp_path / "shared", tmp_path / "outside"
    for d in (store / "sha256" / "ab", shared / "clips", outside):
        d.mkdir(parents=True)
    (store / "sha256" / "ab" / "ab12.jpg").write_bytes(b"jpeg")
    (shared / "clips" / "a.mp4").write_bytes(b"mp4")
    (outside / "secret.txt").write_text("secret")
    (store / "escape.jpg").symlink_to(outside / "secret.txt")  # file symlink out of the store
    (store / "dir").symlink_to(outside, target_is_directory=True)  # directory symlink out
    (store / "to-shared.mp4").symlink_to(shared / "clips" / "a.mp4")  # into another root: fine
    (tmp_path / "store-evil").mkdir()  # a sibling whose name starts with the store's
    (tmp_path / "store-evil" / "x.jpg").write_bytes(b"x")
    return MediaRoots(store, (shared,)), tmp_path


def refused(roots: MediaRoots, uri, match: str) -> str:
    with pytest.raises(MediaRefused, match=match) as exc:
        roots.resolve(uri)
    return str(exc.value)


def test_store_uris_file_uris_and_paths_inside_the_roots_resolve(tree):
    roots, base = tree
    jpg = base / "store" / "sha256" / "ab" / "ab12.jpg"
    assert roots.resolve("media:sha256/ab/ab12.jpg") == jpg
    assert roots.resolve(jpg.as_uri()) == jpg
    assert roots.resolve(str(jpg)) == jpg
    assert roots.resolve("file://localhost" + str(jpg)) == jpg
    mp4 = base / "shared" / "clips" / "a.mp4"
    assert roots.resolve(mp4.as_uri()) == mp4  # a read-only root
    assert roots.resolve("media:to-shared.mp4") == mp4  # a symlink from one root into another
    assert roots.resolve(str(base / "store" / "sha256" / "." / "ab" / "ab12.jpg")) == jpg
    assert roots.uri_for("sha256/ab/ab12.jpg") == "media:sha256/ab/ab12.jpg"


def test_paths_outside_the_roots_are_refused_with_the_reason(tree):
    roots, base = tree
    refused(roots, "/etc/passwd", "outside the media roots")
    refused(roots, "file:///etc/passwd", "outside the media roots")
    refused(roots, str(base / "outside" / "secret.txt"), "outside the media roots")
    refused(roots, str(base / "store-evil" / "x.jpg"), "outside the media roots")  # not a prefix match
    refused(roots, str(base / "store"), "outside the media roots")  # the root itself is no file


def test_dot_dot_is_refused_even_when_it_would_land_inside(tree):
    roots, base = tree
    refused(roots, f"{base}/store/../outside/secret.txt", r"contains '\.\.'")
    refused(roots, f"{base}/store/sha256/../sha256/ab/ab12.jpg", r"contains '\.\.'")
    refused(roots, "media:../outside/secret.txt", r"contains '\.\.'")
    refused(roots, "media:sha256/../../outside/secret.txt", r"contains '\.\.'")
    refused(roots, f"file://{base}/store/%2e%2e/outside/secret.txt", r"contains '\.\.'")  # percent-encoded


def test_symlinks_out_of_a_root_are_refused(tree):
    roots, base = tree
    refused(roots, "media:escape.jpg", "symlink")
    refused(roots, str(base / "store" / "escape.jpg"), "symlink")
    refused(roots, "media:dir/secret.txt", "symlink")  # a directory symlink on the way
    refused(roots, (base / "store" / "dir" / "secret.txt").as_uri(), "symlink")


def test_other_schemes_hosts_and_malformed_uris_are_refused(tree):
    roots, base = tree
    for uri in ("http://127.0.0.1/x.jpg", "http://localhost:8080/x", "https://[::1]/x.jpg",
                "http://10.0.0.5/x.jpg", "http://192.168.1.1/x", "http://169.254.169.254/latest/meta-data",
                "http://0.0.0.0/x", "http://metadata.google.internal/x"):
        assert "internal address" in refused(roots, uri, "internal address"), uri
    refused(roots, "https://example.com/cat.jpg", "remote media is not fetched")
    for uri in ("s3://bucket/x.jpg", "ftp://example.com/x", "data:image/png;base64,AAAA", "gopher://x",
                "FILE2://x", "javascript:alert(1)", "C:/Windows/win.ini"):
        refused(roots, uri, "is not readable here")
    refused(roots, "file://otherhost/etc/passwd", "another host")
    refused(roots, f"file://{base}/store/sha256/ab/ab12.jpg?x=1", "query or fragment")
    refused(roots, "sha256/ab/ab12.jpg", "relative path")
    refused(roots, "media:/etc/passwd", "relative to the media store")
    refused(roots, "media:", "relative to the media store")
    refused(roots, f"{base}/store/a\x00.jpg", "NUL")
    refused(roots, f"file://{base}/store/a%00.jpg", "NUL")
    refused(roots, "/" + "a" * 5000, "longer than")
    for nothing in ("", None, 42):
        refused(roots, nothing, "no media_uri")


def test_without_roots_everything_is_refused_and_without_a_store_media_uris_are(tree):
    _, base = tree
    refused(MediaRoots(), str(base / "store" / "sha256" / "ab" / "ab12.jpg"), "no media roots are configured")
    only_shared = MediaRoots(None, (base / "shared",))
    refused(only_shared, "media:sha256/ab/ab12.jpg", "none is configured")
    assert only_shared.resolve(str(base / "shared" / "clips" / "a.mp4")).name == "a.mp4"
    assert MediaRoots.from_settings(None) == MediaRoots()


def test_roots_come_from_the_settings(tmp_path):
    s = Settings.from_env({"PULSE_HOME": str(tmp_path),
                           "PULSE_MEDIA_READ_ROOTS": f"{tmp_path}/a{os.pathsep}{os.pathsep}{tmp_path}/b"})
    assert s.media_root == tmp_path.resolve() / "media"
    assert s.media_read_roots == (tmp_path.resolve() / "a", tmp_path.resolve() / "b")
    roots = MediaRoots.from_settings(s)
    assert roots == MediaRoots(tmp_path.resolve() / "media", s.media_read_roots)
    assert MediaRoots.from_settings(s) is roots  # cached: roots resolved once per process
    s2 = Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_MEDIA_ROOT": str(tmp_path / "m")})
    assert s2.media_root == tmp_path.resolve() / "m" and s2.media_read_roots == ()
    with pytest.raises(SettingsError, match="PULSE_MEDIA_READ_ROOTS"):
        Settings.from_env({"PULSE_HOME": str(tmp_path), "PULSE_MEDIA_READ_ROOTS": "relative/dir"})


def test_upload_media_checks_the_roots_before_the_size(tree):
    roots, base = tree
    up = {"kind": "IMAGE", "media_uri": "media:sha256/ab/ab12.jpg"}
    assert upload_media(up, 100, roots) == str(base / "store" / "sha256" / "ab" / "ab12.jpg")
    with pytest.raises(MediaError, match="PULSE_MEDIA_MAX_BYTES"):
        upload_media(up, 2, roots)
    with pytest.raises(MediaRefused):  # refused before its size is even read
        upload_media({"kind": "IMAGE", "media_uri": "/proc/self/environ"}, 10**9, roots)
    with pytest.raises(MediaError, match="without media_uri"):
        upload_media({"kind": "VIDEO", "media_uri": None}, 100, roots)
    assert issubclass(MediaRefused, ValueError)  # every bad-media handler catches it


_segment = st.sampled_from(["..", ".", "", "sha256", "ab", "ab12.jpg", "escape.jpg", "dir", "secret.txt",
                            "%2e%2e", "store", "outside", "shared", "clips", "a.mp4", "to-shared.mp4"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(["media:", "file://", "", "file://localhost", "http://127.0.0.1/"]),
       absolute=st.booleans(), parts=st.lists(_segment, max_size=6), junk=st.text(max_size=8))
def test_whatever_resolves_lies_inside_a_root(tree, prefix, absolute, parts, junk):
    roots, base = tree
    path = "/".join(parts + ([junk] if junk else []))
    if absolute and prefix != "media:":
        path = f"{base}/{path}"
    try:
        got = roots.resolve(prefix + path)
    except MediaRefused as exc:
        assert str(exc)  # always a reason
        return
    real = [Path(os.path.realpath(r)) for r in (base / "store", base / "shared")]
    assert any(got.is_relative_to(r) and got != r for r in real), got
    assert got == Path(os.path.realpath(got))  # symlinks already followed: what is opened was checked
