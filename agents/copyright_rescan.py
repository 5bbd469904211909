"""Copyright rescan: a work registered *after* copies of it were published is matched against the
published posts' fingerprints, and each copy gets a late copyright verdict (BLOCK takes it down).

Copyright Guard matches an upload against the works registered as of the upload's event time, so
a work registered later is never matched against what was already published. This agent closes
that gap. It consumes ``copyright-references``; for each REGISTER at event time ``T`` (not
WITHDRAW) it matches the work against the posts that were *published as of T* and not taken down
or expired by then, using three side inputs (global tables, read as of ``T``):

* ``fingerprints``: ``content-fingerprints`` (Copyright Guard's ``ContentFingerprint`` of every
  image, video and audio upload) folded into :class:`models.copyright.late.PostFingerprints`, a
  PDQ index over the posts' images and video frames plus their ORB and Chromaprint fingerprints;
* ``published``: ``posts-published`` (:class:`agents.shared.posts.PublishedPosts`);
* ``takedowns``: ``takedowns`` (:class:`agents.shared.posts.Takedowns`).

Direction and thresholds: each candidate post is the *query* and the new work alone is the
reference bank, and the gate's own matcher decides (``ReferenceBank.match_features`` on the
post's fingerprints, with the gate's thresholds from :mod:`models.copyright.matching`). The
matchers are not symmetric (dihedral PDQs of the query, the share of the query's frames in
order, ORB's ratio test from query to reference, Chromaprint alignment of the query inside the
reference), and the gate's direction is the one whose thresholds were measured on re-encodes,
crops, overlays and excerpts (``pulse eval copyright``). So a published post that is a
re-encoded, resized or cropped copy of the work, or an excerpt of it, is flagged exactly when the
upload-time gate would have flagged it had the work been registered first, with the same
evidence and action. The PDQ index only picks candidates; ORB verification covers every eligible
post of the work's modality up to ``RESCAN_ROBUST_MAX`` (see :mod:`models.copyright.late`).

Per matched post (post id order), with the post's hashtags as metadata evidence:

* action BLOCK (the work's policy BLOCK), RESTRICT or REVIEW: one ``CopyrightVerdict`` (the
  version Copyright Guard emits) at ``T``, ``cause_event_id`` the registration's id, id derived
  from it and the post, reasons starting with "late match"; the publisher takes a published post
  down on a BLOCK (status TAKEN_DOWN, ``takedowns`` event and row). REVIEW also queues a
  ``copyright`` review task exactly as Copyright Guard does; the moderator's decision comes back
  through Copyright Guard as the final verdict.
* every match (also MONITOR, and a rights holder's own post, which is reported, never blocked):
  a ``copyright_matches`` row, as Copyright Guard writes.

Why only posts published as of ``T``: the publisher keeps the latest verdict per gate, and acts on
a published post only when that verdict is BLOCK. A late REVIEW or RESTRICT on a post that is not
published (blocked for another work, or held for review) would replace a stricter earlier verdict.
Posts uploaded at or after ``T`` are left out too: the gate matched them against the work.
Limits: a post uploaded before ``T`` but published after it (held across ``T`` by a gate) is
checked neither by the gate nor here; a post whose copyright verdict a moderator gave (model
``human-review``) keeps it, since the publisher ranks human verdicts above automatic ones.

Determinism: event ids from ``ctx.derive_id``, times from the registration; the registration is
matched as of its own time. The side inputs are live streams read without a watermark (a post
published just before ``T`` may not have reached a live worker's side state yet), so the agent is
``order_sensitive``: a replay reads them whole first and can find a match the live run missed.
``blocking``: a registration with only a ``media_uri`` is fingerprinted here, and the rescan is
CPU work.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from agents.shared.copyright import match_rows, review_effects
from agents.shared.media import MediaRoots
from agents.shared.posts import PublishedPosts, Takedowns, open_published, open_takedowns
from streams.contracts.agent import AgentSpec, Context, Event, SideInput, State, dt_of
from streams.contracts.effects import Effect, Emit

log = logging.getLogger("pulse.copyright_rescan")

NAME = "copyright_rescan"
REFERENCES = "copyright-references"
FINGERPRINTS = "content-fingerprints"


def open_fingerprints(config: Any, models: Any):  # noqa: ARG001 - nothing to configure
    """``SideInput.open`` for ``content-fingerprints``: an empty
    :class:`~models.copyright.late.PostFingerprints`."""
    from models.copyright.late import PostFingerprints

    return PostFingerprints()


def work_of(record: dict[str, Any], roots: MediaRoots):
    """The :class:`~models.copyright.Reference` a REGISTER event describes: its fingerprints, or
    for a ``media_uri``-only registration the fingerprints of that file (inside the media
    ``roots`` only: :class:`~agents.shared.media.MediaRefused` otherwise, a ValueError).

    Raises
    ------
    ValueError
        Neither fingerprints nor a readable ``media_uri``; fingerprints the bank refuses; media
        that cannot be fingerprinted (``MediaError`` is a ValueError).
    OSError
        The media file cannot be read.
    """
    from models.copyright import Reference, ReferenceBank, reference_fingerprints

    rid = record["reference_id"]
    fps = [{"kind": f["kind"], "offset_ms": int(f.get("offset_ms") or 0),
            "value": bytes(f["value"])} for f in record.get("fingerprints") or ()]
    modality = record.get("media_kind")
    if not fps:
        if not record.get("media_uri"):
            raise ValueError(f"reference {rid} has neither fingerprints nor a media_uri")
        path = roots.resolve(record["media_uri"])
        modality, fps = reference_fingerprints(path)
    work = Reference(rid, str(modality).upper(), record.get("title") or rid,  # type: ignore[arg-type]
                     record.get("rights_holder_id") or "", record.get("policy") or "BLOCK",
                     tuple(fps))
    ReferenceBank().register_fingerprints(rid, work.modality, fps)  # raises what it refuses
    return work


def process(state: State, event: Event, ctx: Context) -> list[Effect]:  # noqa: ARG001 - stateless
    """One ``copyright-references`` REGISTER -> a late verdict (and review task, match rows) for
    every published post the work matches; WITHDRAW -> nothing."""
    from models.copyright import MODEL_NAME, MODEL_VERSION

    record = event.record
    if record["action"] != "REGISTER":
        return []
    at = ctx.event_time_ms
    prints = ctx.side["fingerprints"]
    published: PublishedPosts = ctx.side["published"]
    takedowns: Takedowns = ctx.side["takedowns"]
    work = work_of(record, MediaRoots.from_settings(ctx.config))

    def eligible(p) -> bool:  # uploaded before T (the gate matched later ones), live at T
        facts = published.get(p.post_id, at)
        return (p.at_ms < at and facts is not None and facts.live_at(at)
                and not takedowns.taken_down(p.post_id, at))

    def metadata_of(post_id: str) -> dict:
        facts = published.get(post_id, at)
        return {"hashtags": list(facts.hashtags) if facts is not None else []}

    t0 = time.perf_counter()
    found, checked = prints.late_matches(work, eligible, metadata_of)
    log.info("late matches of %s: %d of %d candidates (%d fingerprinted posts) in %.0f ms",
             work.reference_id, len(found), checked, len(prints),
             (time.perf_counter() - t0) * 1e3)
    effects: list[Effect] = []
    for m in found:
        d = m.decision
        facts = published.get(m.post_id, at)
        effects += match_rows(m.post_id, d, at, ctx.timestamp_us)
        if d.action == "ALLOW":
            continue  # MONITOR policy, or the rights holder's own post: reported only
        matches = []
        for x in d.matches:
            row = x.as_avro()
            row.update(modality=x.modality, title=x.title or None)
            matches.append(row)
        late = (f"late match: reference {work.reference_id} registered at "
                f"{dt_of(at).isoformat()} after the post was published at "
                f"{dt_of(facts.published_at).isoformat()}")
        verdict = {
            "event_id": ctx.derive_id(f"late:{m.post_id}"), "event_time": dt_of(at),
            "producer": NAME, "cause_event_id": record["event_id"], "model": MODEL_NAME,
            "model_version": MODEL_VERSION, "post_id": m.post_id, "creator_id": m.creator_id,
            "action": d.action, "matches": matches, "reasons": [late] + list(d.reasons),
            "latency_ms": None, "modality": d.modality,
        }
        effects.append(Emit("copyright-verdicts", verdict))
        if d.action == "REVIEW":
            cause = {"event_id": verdict["event_id"], "event_time": verdict["event_time"]}
            effects += review_effects(cause, verdict, d, agent=NAME)
    return effects


SPEC = AgentSpec(
    name=NAME,
    topics=(REFERENCES,),
    process=process,
    outputs=("copyright-verdicts", "review-queue"),
    doc="Matches each newly registered work against the posts already published (late matches; "
        "BLOCK takes them down). Side inputs: content-fingerprints, posts-published, takedowns.",
    batch_size=8,
    sinks=frozenset({"cassandra"}),
    side_inputs=(SideInput(name="fingerprints", topic=FINGERPRINTS, open=open_fingerprints),
                 SideInput(name="published", topic="posts-published", open=open_published),
                 SideInput(name="takedowns", topic="takedowns", open=open_takedowns)),
    blocking=True,
    order_sensitive=True,
)
