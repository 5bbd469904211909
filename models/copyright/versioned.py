"""Registered reference works *as of an event time*: the ``copyright-references`` topic folded into
versions with validity intervals, so that an upload is matched against exactly the works that
were registered, and not withdrawn or replaced, at the upload's ``event_time``.

Why: Copyright Guard reads ``copyright-references`` as a side input (a global table). A live
worker has read the topic up to about the moment it matches an upload; a replay has read all of
it before it starts. A bank that only holds "the references now" would make a replay match old
uploads against today's works. :class:`VersionedReferenceBank` answers for a given time instead.

Semantics, for an upload at event time ``t`` (UTC epoch ms):

* every REGISTER of a ``reference_id`` is a *version* of that reference, valid from the
  REGISTER's ``event_time`` until the next event of the same ``reference_id`` in event-time
  order (a later REGISTER replaces it, a WITHDRAW ends it), i.e. on ``[registered_at, until)``;
  events of one reference with equal event times take their offset order (the topic is keyed by
  ``reference_id``, so one reference's events are in one partition);
* a version counts for the upload iff ``registered_at <= t < until``.

Matching is done by a :class:`~models.copyright.ReferenceBank` that holds exactly the versions
valid at ``t`` (under their public ``reference_id``), inserted in a canonical order
(``registered_at``, ``reference_id``, version number): the decision, evidence, reasons and their
order are those a plain bank holding those references would give, whatever order the events
arrived in and whatever happened later. (Matching a bank of every version and dropping the
matches of versions not valid at ``t`` would not be: versions registered later, or withdrawn,
change which references the robust stage verifies, since it skips ORB when PDQ already matched
something, verifies every image reference only while there are at most
``ROBUST_EXHAUSTIVE_MAX`` of them and a video's ``ROBUST_VIDEO_TOP_K`` best only; they would
also count in metadata evidence.) The bank follows the requested time incrementally: moving
forward in time adds and removes the versions whose intervals start or end in between (the
common case: a live worker, a replay of uploads in time order); moving back re-adds earlier
versions, re-inserting those registered after them to keep the canonical order.

Limits
------
* Late data: a reference event that arrives *after* an upload was matched live, but carries an
  earlier ``event_time`` than the upload, is seen by a replay and was not by the live run, so the
  two can decide that upload differently. ``pulse copyright register`` / ``withdraw`` stamp the
  current time, so in practice live and replay agree.
* Every version ever registered stays in memory (its fingerprints in event form, a few tens of
  KB for an image, more for a long video), withdrawn and replaced ones included: a replay or a
  late upload may need them. Only the versions valid at the time asked hold decoded indexes.

A bad event (missing fields, unknown action, fingerprints the bank refuses, a ``media_uri`` that
cannot be read or fingerprinted) is logged and skipped: it does not replace or end the current
version. An event whose ``event_id`` was already applied is ignored. Thread-safe (one lock).
"""
from __future__ import annotations

import bisect
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from os import PathLike
from typing import Any, Callable, Iterator

from models.copyright.bank import ReferenceBank, reference_fingerprints
from models.copyright.decision import CopyrightDecision

log = logging.getLogger("pulse.copyright_guard.references")

_INF = float("inf")


def _ms(t: Any) -> int:
    """An event time (aware datetime as decoded, or epoch ms) as epoch ms."""
    if isinstance(t, datetime):
        return int(round(t.timestamp() * 1000))
    return int(t)


@dataclass(frozen=True)
class ReferenceVersion:
    """One REGISTER of a reference work.

    Attributes
    ----------
    version_id:
        ``reference_id`` for its first registration, ``f"{reference_id}~{n}"`` for the ``n``-th
        later one (in the topic's offset order).
    reference_id, title, rights_holder_id, policy, modality:
        As registered (``title`` defaults to the id, ``policy`` to BLOCK).
    n:
        0 for the first registration of the reference, then 1, 2, ...
    registered_at_ms:
        The REGISTER's ``event_time`` (UTC epoch ms): the version counts from then on.
    fingerprints:
        In event form (``{"kind", "offset_ms", "value"}``), as carried by the event or computed
        from its ``media_uri``.
    """

    version_id: str
    reference_id: str
    n: int
    registered_at_ms: int
    modality: str
    title: str
    rights_holder_id: str
    policy: str
    fingerprints: tuple[dict, ...]

    @property
    def order(self) -> tuple[int, str, int]:
        """The canonical order of versions in a bank: registration time, id, version number."""
        return (self.registered_at_ms, self.reference_id, self.n)


class VersionedReferenceBank:
    """The ``copyright-references`` topic as versions with validity intervals (module docstring).

    Parameters
    ----------
    resolve_media:
        ``resolve_media(media_uri) -> local path or None`` for REGISTER events that carry no
        fingerprints (the worker fingerprints the file itself); ``ValueError`` for a URI it
        cannot read. Without it such events are skipped.

    Example
    -------
    >>> refs = VersionedReferenceBank()                          # doctest: +SKIP
    >>> refs.apply(register_event)          # a decoded CopyrightReference, event_time t0
    >>> refs.decision_for_file("upload.jpg", t0 - 1).action     # "ALLOW": not registered yet
    >>> refs.decision_for_file("upload.jpg", t0).action         # "BLOCK" for a copy
    """

    def __init__(self, resolve_media: Callable[[str | None], str | None] | None = None) -> None:
        self._resolve = resolve_media
        self._lock = threading.RLock()
        self._versions: dict[str, ReferenceVersion] = {}  # version_id -> version
        self._until: dict[str, float] = {}  # version_id -> end of validity (ms; inf = open)
        self._history: dict[str, list[tuple[int, int, str, str | None]]] = {}
        # reference_id -> [(event_time_ms, arrival index, action, version_id or None)]
        self._seen: set[str] = set()  # event_ids applied
        self.applied = 0
        self.skipped = 0
        # the bank for one time segment [lo, hi) between consecutive interval boundaries
        self._bank = ReferenceBank()
        self._held: list[str] = []  # version ids in the bank, in canonical order
        self._segment: tuple[float, float] = (_INF, -_INF)  # empty: nothing computed yet
        self._boundaries: list[int] | None = []  # sorted starts and ends; None = to rebuild

    # ---- the fold ----------------------------------------------------------------------------

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one decoded ``CopyrightReference`` event in (REGISTER or WITHDRAW). Never raises
        for a bad event: it is logged and skipped."""
        with self._lock:
            try:
                self._apply(record)
            except Exception as exc:  # noqa: BLE001 - one bad reference must not stop the gate
                self.skipped += 1
                log.error("copyright reference %s (event %s) skipped: %s",
                          _get(record, "reference_id"), _get(record, "event_id"), exc)
            else:
                self.applied += 1

    def _apply(self, ref: dict[str, Any]) -> None:
        event_id = ref.get("event_id")
        if event_id is not None and event_id in self._seen:
            return
        rid = ref["reference_id"]
        if not rid:
            raise ValueError("empty reference_id")
        at = _ms(ref["event_time"])
        action = ref["action"]
        history = self._history.get(rid, [])
        if action == "WITHDRAW":
            entry = (at, len(history), "WITHDRAW", None)
        elif action == "REGISTER":
            version = self._version(ref, rid, at)
            self._versions[version.version_id] = version
            entry = (at, len(history), "REGISTER", version.version_id)
        else:
            raise ValueError(f"unknown action {action!r}; REGISTER or WITHDRAW")
        self._history[rid] = history + [entry]
        if event_id is not None:
            self._seen.add(event_id)
        self._intervals(rid)
        self._boundaries = None
        self._segment = (_INF, -_INF)

    def _version(self, ref: dict[str, Any], rid: str, at: int) -> ReferenceVersion:
        """The version a REGISTER event makes, its fingerprints checked by a scratch bank.

        Raises
        ------
        ValueError, MediaError, OSError: fingerprints the bank refuses; neither fingerprints nor
            a readable ``media_uri``.
        """
        fps = [{"kind": f["kind"], "offset_ms": int(f.get("offset_ms") or 0),
                "value": bytes(f["value"])} for f in ref.get("fingerprints") or []]
        modality = ref.get("media_kind")
        if not fps:
            uri = ref.get("media_uri")
            path = self._resolve(uri) if self._resolve is not None and uri else None
            if path is None:
                raise ValueError(f"reference {rid} has neither fingerprints nor a readable "
                                 f"media_uri ({uri!r})")
            modality, fps = reference_fingerprints(path)
        n = sum(1 for _, _, a, _ in self._history.get(rid, []) if a == "REGISTER")
        version = ReferenceVersion(
            version_id=rid if n == 0 else f"{rid}~{n}", reference_id=rid, n=n,
            registered_at_ms=at, modality=str(modality or "").upper(),
            title=ref.get("title") or rid, rights_holder_id=ref.get("rights_holder_id") or "",
            policy=ref.get("policy") or "BLOCK", fingerprints=tuple(fps))
        _register(ReferenceBank(), version)  # raises what register_fingerprints refuses
        return version

    def _intervals(self, rid: str) -> None:
        """Recompute the validity intervals of ``rid``'s versions from its events in event-time
        order (ties: offset order)."""
        current = None
        for at, _, action, vid in sorted(self._history[rid], key=lambda e: (e[0], e[1])):
            if current is not None:
                self._until[current] = at
                current = None
            if action == "REGISTER":
                current = vid
        if current is not None:
            self._until[current] = _INF

    # ---- as of a time ------------------------------------------------------------------------

    def valid_at(self, at_ms: int) -> list[ReferenceVersion]:
        """The versions that count for an upload at ``at_ms``, in canonical order."""
        with self._lock:
            return sorted((v for v in self._versions.values()
                           if v.registered_at_ms <= at_ms < self._until[v.version_id]),
                          key=lambda v: v.order)

    def interval(self, version_id: str) -> tuple[int, int | None]:
        """``(registered_at_ms, until_ms)`` of a version; ``until_ms`` None while it is current.

        Raises
        ------
        KeyError: no such version.
        """
        with self._lock:
            until = self._until[version_id]
            return self._versions[version_id].registered_at_ms, (
                None if until == _INF else int(until))

    def decision_for_file(self, path: str | PathLike[str], at_ms: int, *,
                          metadata: dict | None = None) -> CopyrightDecision:
        """:meth:`ReferenceBank.decision_for_file` against the references valid at ``at_ms``
        (bad media -> a verdict). Its ``latency_ms`` is this run's and must not leave the
        process."""
        with self._lock:
            return self._bank_at(at_ms).decision_for_file(path, metadata=metadata)

    def decision_for_features(self, features, at_ms: int, *, metadata: dict | None = None
                              ) -> CopyrightDecision:
        """:meth:`ReferenceBank.match_features` against the references valid at ``at_ms`` (the
        features of :func:`models.copyright.query.query_features`). Its ``latency_ms`` is this
        run's and must not leave the process."""
        with self._lock:
            return self._bank_at(at_ms).match_features(features, metadata=metadata)

    def bank_at(self, at_ms: int) -> ReferenceBank:
        """The bank of the references valid at ``at_ms``. It is this object's working bank: use
        it before the next call of any method (under one thread), and never modify it."""
        with self._lock:
            return self._bank_at(at_ms)

    def _bank_at(self, at_ms: int) -> ReferenceBank:
        lo, hi = self._segment
        if lo <= at_ms < hi:
            return self._bank
        target = self.valid_at(at_ms)
        wanted = {v.version_id for v in target}
        held = set(self._held)
        add = [v for v in target if v.version_id not in held]
        move: list[ReferenceVersion] = []
        if add:  # keep the canonical order: re-insert the held versions that sort after it
            first = add[0].order
            move = [self._versions[h] for h in self._held
                    if h in wanted and self._versions[h].order > first]
        drop = {h for h in self._held if h not in wanted} | {v.version_id for v in move}
        for h in self._held:
            if h in drop:
                self._bank.withdraw(self._versions[h].reference_id)
        self._held = [h for h in self._held if h not in drop]
        for v in sorted(add + move, key=lambda v: v.order):
            _register(self._bank, v)
            self._held.append(v.version_id)
        self._segment = self._segment_of(at_ms)
        return self._bank

    def _segment_of(self, at_ms: int) -> tuple[float, float]:
        """The interval ``[lo, hi)`` around ``at_ms`` in which no version starts or ends."""
        if self._boundaries is None:
            points = {v.registered_at_ms for v in self._versions.values()}
            points |= {int(u) for u in self._until.values() if u != _INF}
            self._boundaries = sorted(points)
        b = self._boundaries
        i = bisect.bisect_right(b, at_ms)
        return (b[i - 1] if i else -_INF), (b[i] if i < len(b) else _INF)

    # ---- introspection -----------------------------------------------------------------------

    def __len__(self) -> int:
        """Versions held (every REGISTER applied, withdrawn and replaced ones included)."""
        return len(self._versions)

    def __iter__(self) -> Iterator[ReferenceVersion]:
        with self._lock:
            return iter(sorted(self._versions.values(), key=lambda v: v.order))

    def __contains__(self, version_id: object) -> bool:
        return version_id in self._versions


def _register(bank: ReferenceBank, v: ReferenceVersion) -> None:
    bank.register_fingerprints(v.reference_id, v.modality, list(v.fingerprints), title=v.title,
                               rights_holder_id=v.rights_holder_id, policy=v.policy)


def _get(record: Any, key: str) -> Any:
    return record.get(key) if isinstance(record, dict) else None
