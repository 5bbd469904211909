"""Real input for the demo, turned into event records (plain dicts).

Two sources:

- :mod:`streams.demo.sources.stackexchange`: a Stack Exchange data dump (users, questions, answers,
  comments, votes) as ``user_signup``, ``upload``, ``interaction`` and ``follow`` records;
- :mod:`streams.demo.sources.media`: the real photographs shipped inside scikit-image and a directory
  of videos and images, as ``upload`` records.

Records are plain dicts shaped like the Avro schemas in ``schemas/avro/`` (which are the only
definition of an event; the unit tests check the records against them when they exist). Every
record carries ``event_id`` (UUID string), ``event_time`` (int, UTC epoch milliseconds) and
``producer`` (str, for example ``"demo.stackexchange"``).

``event_id`` is deterministic: UUID version 5 (RFC 9562, SHA-1 name-based) of
:data:`EVENT_ID_NAMESPACE` and a name built from the source and the record's natural key, so
loading the same input twice yields the same ids and the idempotent views (keyed by event ids)
do not double-count a re-run demo.
"""
from __future__ import annotations

import uuid

EVENT_TYPES = ("user_signup", "upload", "interaction", "follow")
"""The event types the sources produce, in the order a tie at one ``event_time`` is broken."""

EVENT_ID_NAMESPACE = uuid.UUID("6f1c54e2-4a9f-5b83-9d0e-2b7c31a8e5d4")
"""Fixed namespace of every source event id. Never change it: every id would change with it."""


def stable_event_id(source: str, key: str) -> str:
    """Deterministic event id: ``uuid5(EVENT_ID_NAMESPACE, f"{source}:{key}")`` as a string.

    Parameters
    ----------
    source
        Which input the record comes from, e.g. ``"stackexchange"`` or ``"media"``.
    key
        The record's natural key within that source, e.g. ``"upload:se-p42"``.

    Examples
    --------
    >>> a = stable_event_id("stackexchange", "upload:se-p1")
    >>> a == stable_event_id("stackexchange", "upload:se-p1") != stable_event_id("media", "x")
    True
    """
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{source}:{key}"))
