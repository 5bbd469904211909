"""Late matches: a work registered after copies of it were uploaded, matched against the posts'
fingerprints (``ContentFingerprint`` events), so that the copies can be taken down.

:class:`PostFingerprints` is the ``content-fingerprints`` topic folded into an index: every post's
fingerprints in event form, its image PDQs (the 8 rotations/flips) in one multi-index PDQ bank and
its video frames' PDQs in another (:class:`~models.fingerprints.PDQBank`, exact Hamming search).
:meth:`PostFingerprints.late_matches` takes one new work and answers which of the eligible posts
it matches.

Direction. Each candidate post is matched *as the upload-time gate matched it*: the post's
fingerprints are the query (:func:`~models.copyright.query.from_fingerprints`) and a bank holding
the new work alone is the reference side (:meth:`ReferenceBank.match_features`). The PDQ
indexes only choose the candidates, by the symmetric Hamming distance the gate would measure.
Why not the other way round (the work as query against a bank of posts)? The matchers are not
symmetric: PDQ's rotations/flips are computed of the query image only, an excerpt of a longer
video is judged by the share of *its* frames that match, ORB's ratio test and its scale bounds
go from query to reference, and Chromaprint alignment needs the reference to contain the query.
A post that is a re-encoded, cropped or shortened copy of the work, or an excerpt of it, is an
upload that would have been flagged had the work been registered before it; matching in the
gate's direction, with the gate's thresholds (:mod:`models.copyright.matching`), flags exactly
those, with the same evidence and the same action for the work's policy.

Candidates for a work (its fingerprints in ``CopyrightReference`` form):

* IMAGE: image posts with a dihedral PDQ within ``PDQ_GREY_DISTANCE`` of the work's PDQ; and
  every eligible image post while there are at most :data:`RESCAN_ROBUST_MAX` of them (the
  gate, with one work registered, verifies ORB on every upload PDQ does not settle: crops and
  overlays are found only that way). Beyond the bound, PDQ-near posts only.
* VIDEO: video posts with a frame within ``PDQ_MATCH_DISTANCE`` of one of the work's frames; every
  eligible post with a soundtrack when the work has one; every eligible video post while there
  are at most :data:`RESCAN_ROBUST_MAX` (the gate's robust stage probes every video reference
  while it holds at most ``ROBUST_VIDEO_TOP_K``).
* AUDIO: every eligible post with audio (no audio index yet, as in the gate).

Not thread-safe by itself: :meth:`apply` and :meth:`late_matches` take one lock.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from models.copyright import matching as mt
from models.copyright.bank import ReferenceBank
from models.copyright.decision import CopyrightDecision, own_work_allowed
from models.copyright.query import QueryFeatures, from_fingerprints
from models.copyright.versioned import _ms
from models.fingerprints import PDQBank

log = logging.getLogger("pulse.copyright.late")

RESCAN_ROBUST_MAX = 1000
"""Most eligible posts of a modality that a new work is verified against exhaustively (the gate's
matcher on each: ORB verification plus the PDQ look-ups, measured at 4-7 ms a post on this 2-core
machine under load, so at most about 5-7 s of CPU per new image work; ``docs/copyright-guard.md``).
Beyond it only PDQ-near posts are candidates, as the gate checks only the PDQ-nearest references
beyond ``ROBUST_EXHAUSTIVE_MAX``: a crop whose PDQ is far is then missed."""

_SEP = "\x1f"


@dataclass(frozen=True)
class PostPrint:
    """One post's fingerprints as folded: ``at_ms`` is the event time (the upload's, UTC epoch ms)."""

    post_id: str
    creator_id: str
    at_ms: int
    event_id: str
    modality: str
    fingerprints: tuple[dict, ...]
    has_audio: bool

    def features(self) -> QueryFeatures:
        """The matcher's features, rebuilt from event form (raises ``ValueError`` if corrupt)."""
        return from_fingerprints(self.modality, list(self.fingerprints))


@dataclass(frozen=True)
class LateMatch:
    """A post a new work matches: the gate's decision for it (own work already allowed)."""

    post_id: str
    creator_id: str
    uploaded_at_ms: int
    decision: CopyrightDecision


class PostFingerprints:
    """Side state over ``content-fingerprints``: posts' fingerprints, indexed (module docstring).

    A post's first fingerprints by (event time, event id) are kept; a re-delivered or later copy
    changes nothing, so the index does not depend on arrival order. A tombstone (``None``) is
    ignored by the runtime before ``apply``; memory is about 19 kB an image post (its ORB table)
    and 40 bytes a video frame plus 150 kB of ORB per video.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._posts: dict[str, PostPrint] = {}
        self._image_pdq = PDQBank()
        self._frame_pdq = PDQBank()
        self.applied = 0
        self.skipped = 0

    def __len__(self) -> int:
        return len(self._posts)

    def __contains__(self, post_id: object) -> bool:
        return post_id in self._posts

    def get(self, post_id: str) -> PostPrint | None:
        return self._posts.get(post_id)

    # ---- the fold ----------------------------------------------------------------------------

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one decoded ``ContentFingerprint`` record in. Never raises for a bad record: it
        is logged and skipped."""
        with self._lock:
            try:
                self._apply(record)
            except Exception as exc:  # noqa: BLE001 - one bad event must not stop the rescan
                self.skipped += 1
                log.error("fingerprints of post %s (event %s) skipped: %s",
                          record.get("post_id"), record.get("event_id"), exc)
            else:
                self.applied += 1

    def _apply(self, r: dict[str, Any]) -> None:
        pid = r["post_id"]
        at = _ms(r["event_time"])
        old = self._posts.get(pid)
        if old is not None and (old.at_ms, old.event_id) <= (at, r["event_id"]):
            return
        fps = tuple({"kind": f["kind"], "offset_ms": int(f.get("offset_ms") or 0),
                     "value": bytes(f["value"]), "quality": f.get("quality"),
                     "orientation": f.get("orientation")} for f in r.get("fingerprints") or ())
        modality = str(r["media_kind"]).upper()
        features = from_fingerprints(modality, list(fps))  # raises for corrupt fingerprints
        if old is not None:
            self._unindex(old)
        self._posts[pid] = PostPrint(pid, r["creator_id"], at, r["event_id"], modality, fps,
                                     features.chroma is not None)
        if modality == "IMAGE":
            self._image_pdq.add([f"{pid}{_SEP}{i}" for i in range(len(features.pdq))],
                                list(features.pdq))
        elif features.frames:
            self._frame_pdq.add([f"{pid}{_SEP}{i}" for i in range(len(features.frames))],
                                [f.pdq for f in features.frames])

    def _unindex(self, p: PostPrint) -> None:
        n = sum(1 for f in p.fingerprints if f["kind"] == "PDQ")
        ids = [f"{p.post_id}{_SEP}{i}" for i in range(n)]
        (self._image_pdq if p.modality == "IMAGE" else self._frame_pdq).remove(ids)

    # ---- matching a new work -----------------------------------------------------------------

    def candidates(self, work, eligible: Callable[[PostPrint], bool]) -> list[str]:
        """Post ids to check against ``work`` (a :class:`~models.copyright.Reference`), sorted;
        only posts ``eligible(post)`` accepts (module docstring for the rules)."""
        with self._lock:
            found: set[str] = set()
            pdq = [bytes(f["value"]) for f in work.fingerprints if f["kind"] == "PDQ"]
            has_audio = any(f["kind"] == "CHROMAPRINT" for f in work.fingerprints)
            if work.modality == "IMAGE":
                for h in pdq:
                    found |= {i.split(_SEP)[0] for i, _ in self._image_pdq.search(
                        h, mt.PDQ_GREY_DISTANCE)}
            elif work.modality == "VIDEO":
                for h in pdq:
                    found |= {i.split(_SEP)[0] for i, _ in self._frame_pdq.search(
                        h, mt.PDQ_MATCH_DISTANCE)}
            found = {p for p in found if eligible(self._posts[p])}
            visual = "IMAGE" if work.modality == "IMAGE" else "VIDEO"
            if work.modality != "AUDIO":
                same = [p for p in self._posts.values()
                        if p.modality == visual and p.post_id not in found and eligible(p)]
                if len(same) + sum(self._posts[p].modality == visual for p in found) \
                        <= RESCAN_ROBUST_MAX:
                    found |= {p.post_id for p in same}
            if has_audio:
                found |= {p.post_id for p in self._posts.values()
                          if p.has_audio and p.post_id not in found and eligible(p)}
            return sorted(found)

    def late_matches(self, work, eligible: Callable[[PostPrint], bool],
                     metadata_of: Callable[[str], dict | None] = lambda _: None
                     ) -> tuple[list[LateMatch], int]:
        """Match ``work`` (a :class:`~models.copyright.Reference`: its modality, fingerprints in
        event form, policy, rights holder) against the eligible posts.

        Returns ``(matches, checked)``: the posts with any evidence for the work (confirmed,
        borderline, or weak evidence their metadata names), each with the decision the gate
        would have made with the work registered, a rights holder's own posts allowed
        (:func:`~models.copyright.own_work_allowed`), in post id order; and how many candidates
        were matched. ``metadata_of(post_id)`` gives the post's metadata (title, caption,
        hashtags; evidence only). Corrupt fingerprints skip that post (logged).

        Raises
        ------
        ValueError : the work's fingerprints are refused by ``ReferenceBank.register_fingerprints``.
        """
        bank = ReferenceBank()
        bank.register_fingerprints(work.reference_id, work.modality, list(work.fingerprints),
                                   title=work.title, rights_holder_id=work.rights_holder_id,
                                   policy=work.policy)
        out: list[LateMatch] = []
        ids = self.candidates(work, eligible)
        for pid in ids:
            p = self._posts[pid]
            try:
                features = p.features()
            except ValueError as exc:
                log.error("fingerprints of post %s unusable: %s", pid, exc)
                continue
            d = bank.match_features(features, metadata=metadata_of(pid))
            if d.matches:
                out.append(LateMatch(pid, p.creator_id, p.at_ms,
                                     own_work_allowed(d, p.creator_id)))
        return out, len(ids)
