"""Errors raised by the fingerprint models."""

from __future__ import annotations


class MediaError(ValueError):
    """The media itself cannot be fingerprinted: unreadable, truncated, of an unsupported format,
    without the needed stream (no audio track), too large or too short. ``str(err)`` is a reason
    a person can read; a verdict can carry it as is. Never raised for a missing tool."""


class FingerprintUnavailable(RuntimeError):
    """A system tool or library the fingerprint needs is missing (ffmpeg, libchromaprint). The
    message names the Debian package to install; it is a deployment problem, not bad media."""
