"""Copyright Guard: matches every upload's media against the registered reference works (the
second gate the publisher waits for).

Consumes ``uploads`` through the worker's consumer group, and ``copyright-references`` as a
*global table*: every worker reads the whole topic, from the beginning, with its own
group-less consumer (as Kafka Streams does for a GlobalKTable), so each worker's
:class:`~models.copyright.ReferenceBank` holds every reference whatever partitions it owns.
Before each batch of uploads the reader catches up to the reference topic's end offsets as of
that moment, so a reference registered before an upload is in the bank when the upload is
matched. A registration carries its fingerprints (``pulse copyright register`` computes them) or
only a ``media_uri``, which the worker fingerprints itself; WITHDRAW removes the reference.

Per upload: IMAGE and VIDEO posts (frames, and a video's soundtrack) are fingerprinted and
matched (:meth:`ReferenceBank.decision_for_file`); TEXT posts have nothing to fingerprint and are
allowed. Emits one ``CopyrightVerdict`` (version 2: modality, ORB evidence) on
``copyright-verdicts`` and one ``copyright_matches`` row per match. Bad media (unreadable,
truncated, unsupported, over the size limit, too short) gets the verdict that says so
(``models.copyright.BAD_MEDIA_ACTION``), never a crash. The batch runs in the agent's own thread.

A REVIEW verdict (borderline evidence, media that could not be checked) puts a task in the
``copyright`` review queue (:mod:`agents.review_tasks`); the moderator's decision, consumed from
``review-decisions``, becomes the final verdict (model ``human-review``).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Sequence

from streams.contracts.effects import Effect, Emit, Upsert

from streams.contracts.agent import AgentSpec, derived_event_id
from agents.content_guard import media_path, upload_media
from agents.review_tasks import (close_task_effects, decision_queue, decision_reasons, dt_of, ms_of,
                           task_created_ms, task_effects)

log = logging.getLogger("pulse.copyright_guard")

NAME = "copyright_guard"
REFERENCES = "copyright-references"
QUEUE = "copyright"


class ReferenceFeed:
    """Keeps a :class:`~models.copyright.ReferenceBank` equal to the ``copyright-references``
    topic: a group-less consumer over every partition, from the beginning.

    ``catch_up()`` applies every reference event up to the end offsets the topic has when it is
    called. An undecodable reference event is logged and skipped (it stays on the topic; the
    codec's message names its position).
    """

    def __init__(self, settings, bank, *, poll_s: float = 0.2):
        from confluent_kafka import Consumer

        from streams.contracts.codec import codec_for
        from streams.contracts.topics import require_bootstrap, topic_spec

        self.bank = bank
        self.codec = codec_for(settings, topic_spec(REFERENCES).schema, REFERENCES)
        self.consumer = Consumer({
            "bootstrap.servers": require_bootstrap(settings),
            "group.id": f"{settings.app_id}-{NAME}-references-{uuid.uuid4()}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "enable.partition.eof": False})
        self.poll_s = poll_s
        self.applied = 0
        self._lock = threading.Lock()
        self._assigned = False

    def _assign(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        md = self.consumer.list_topics(REFERENCES, timeout=10).topics[REFERENCES]
        self.partitions = sorted(md.partitions)
        self.consumer.assign([TopicPartition(REFERENCES, p, OFFSET_BEGINNING) for p in self.partitions])
        self._assigned = True

    def catch_up(self, timeout_s: float = 60.0) -> int:
        """Apply reference events up to the topic's current end; returns how many were applied."""
        from confluent_kafka import TopicPartition

        with self._lock:
            if not self._assigned:
                self._assign()
            ends = {p: self.consumer.get_watermark_offsets(TopicPartition(REFERENCES, p),
                                                           timeout=10)[1] for p in self.partitions}
            done = 0
            deadline = time.monotonic() + timeout_s
            while True:
                positions = {tp.partition: tp.offset for tp in
                             self.consumer.position([TopicPartition(REFERENCES, p) for p in self.partitions])}
                if all(ends[p] == 0 or positions.get(p, -1) >= ends[p] for p in self.partitions):
                    return done
                if time.monotonic() > deadline:
                    log.warning("reference feed: not caught up after %.0f s", timeout_s)
                    return done
                for msg in self.consumer.consume(500, self.poll_s):
                    if msg.error() is not None or msg.value() is None:
                        continue
                    try:
                        self.apply(self.codec.decode(msg.value()))
                        done += 1
                    except Exception as exc:  # noqa: BLE001 - one bad reference must not stop the gate
                        log.error("reference %s[%s]@%s skipped: %s", REFERENCES, msg.partition(),
                                  msg.offset(), exc)
                self.applied += done

    def apply(self, ref: dict[str, Any]) -> None:
        """Register or withdraw one ``CopyrightReference`` in the bank."""
        rid = ref["reference_id"]
        if ref["action"] == "WITHDRAW":
            self.bank.withdraw(rid)
            return
        kw = dict(title=ref.get("title") or rid, rights_holder_id=ref.get("rights_holder_id") or "",
                  policy=ref.get("policy") or "BLOCK")
        fps = [{"kind": f["kind"], "offset_ms": f["offset_ms"], "value": f["value"]}
               for f in ref.get("fingerprints") or []]
        if rid in self.bank:
            self.bank.withdraw(rid)  # REGISTER replaces
        if fps:
            self.bank.register_fingerprints(rid, ref["media_kind"], fps, **kw)
        else:
            path = media_path(ref.get("media_uri"))
            if path is None:
                raise ValueError(f"reference {rid} has neither fingerprints nor media_uri")
            self.bank.register_file(path, rid, **kw)

    def close(self) -> None:
        self.consumer.close()


def own_work_allowed(d, creator_id: str):
    """A rights holder's own upload of its registered work is not an infringement: matches of
    references whose ``rights_holder_id`` is the uploader are reported but do not count."""
    from dataclasses import replace

    from models.copyright import decide

    own = [m for m in d.matches if m.rights_holder_id and m.rights_holder_id == creator_id]
    if not own:
        return d
    rest = [m for m in d.matches if m not in own]
    out = decide(d.modality, rest, latency_ms=d.latency_ms)
    return replace(out, matches=out.matches + own, reasons=out.reasons + [
        f"own work: {m.reference_id} is registered by the uploader {creator_id}" for m in own])


class CopyrightGuard:
    """The agent's core: a bank kept current by a :class:`ReferenceFeed` (or filled directly in
    tests), matching each upload."""

    def __init__(self, bank, feed: ReferenceFeed | None = None, max_media_bytes: int = 150 * 1024 * 1024):
        self.bank = bank
        self.feed = feed
        self.max_media_bytes = max_media_bytes

    def process_batch(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[Any]:
        if self.feed is not None and any(t == "uploads" for t, _ in items):
            self.feed.catch_up()
        out: list[Any] = []
        for topic, record in items:
            try:
                out.append(self.on_upload(record) if topic == "uploads" else
                           self.on_decision(record) if topic == "review-decisions" else [])
            except Exception as exc:  # noqa: BLE001 - dead-lettered alone by the runtime
                out.append(exc)
        return out

    def decision(self, record: dict[str, Any]):
        """The :class:`~models.copyright.CopyrightDecision` for one upload."""
        from models.copyright import CopyrightDecision, bad_media_decision

        if record["kind"] == "TEXT":
            return CopyrightDecision(matched=False, action="ALLOW", modality=None,
                                     reasons=["text post: no media to fingerprint"])
        t0 = time.perf_counter()
        try:
            path = upload_media(record, self.max_media_bytes)
        except (ValueError, OSError) as exc:  # MediaError is a ValueError
            return bad_media_decision(str(exc), latency_ms=(time.perf_counter() - t0) * 1000)
        metadata = {"title": record.get("title"), "caption": record.get("caption"),
                    "hashtags": list(record.get("hashtags") or [])}
        return own_work_allowed(self.bank.decision_for_file(path, metadata=metadata),
                                record["creator_id"])

    def on_upload(self, record: dict[str, Any]) -> list[Effect]:
        from models.copyright import MODEL_NAME, MODEL_VERSION

        d = self.decision(record)
        at = ms_of(record["event_time"])
        modality = d.modality or ("TEXT" if record["kind"] == "TEXT" else None)
        matches = []
        for m in d.matches:
            row = m.as_avro()
            row.update(modality=m.modality, title=m.title or None)
            matches.append(row)
        verdict = {
            "event_id": derived_event_id(NAME, record["event_id"]),
            "event_time": dt_of(at), "producer": NAME,
            "cause_event_id": record["event_id"], "model": MODEL_NAME, "model_version": MODEL_VERSION,
            "post_id": record["post_id"], "creator_id": record["creator_id"], "action": d.action,
            "matches": matches, "reasons": list(d.reasons), "latency_ms": int(round(d.latency_ms)),
            "modality": modality,
        }
        effects: list[Effect] = [Emit("copyright-verdicts", verdict)]
        if d.action == "REVIEW":
            best = d.matches[0] if d.matches else None
            _, task = task_effects(
                agent=NAME, queue=QUEUE, cause=record, verdict_event_id=verdict["event_id"],
                model=MODEL_NAME, model_version=MODEL_VERSION, post_id=record["post_id"],
                author_id=record["creator_id"], comment_id=None,
                scores={} if best is None else {f"similarity:{best.reference_id}": float(best.similarity)},
                reasons=list(d.reasons), text=record.get("caption"), media_uri=record.get("media_uri"),
                priority="NORMAL")
            effects += task
        for m in d.matches:
            distance = m.hamming_distance if m.hamming_distance is not None else m.bit_error_rate
            span = None
            if m.matched_ms is not None:
                span = (f"upload {m.upload_offset_ms or 0} ms / reference "
                        f"{m.reference_offset_ms or 0} ms, {m.matched_ms} ms long")
            effects.append(Upsert("copyright_matches", {
                "post_id": record["post_id"], "reference_id": m.reference_id,
                "modality": m.modality, "distance": None if distance is None else float(distance),
                "matched_span": span, "action": d.action, "matched_at": at,
                "model_version": MODEL_VERSION}, at * 1000))
        return effects

    def on_decision(self, d: dict[str, Any]) -> list[Effect]:
        """A moderator's decision on a ``copyright`` task -> the final verdict (model
        ``human-review``, which the publisher ranks above automatic verdicts)."""
        from agents.content_guard import HUMAN_MODEL

        if decision_queue(d) != QUEUE:
            return []
        at = ms_of(d["event_time"])
        verdict = {
            "event_id": derived_event_id(NAME, d["event_id"]), "event_time": dt_of(at),
            "producer": NAME, "cause_event_id": d["event_id"], "model": HUMAN_MODEL,
            "model_version": d["reviewer_id"], "post_id": d["post_id"],
            "creator_id": d.get("author_id") or "", "action": d["action"], "matches": [],
            "reasons": decision_reasons(d),
            "latency_ms": int(d.get("review_ms") or max(0, at - task_created_ms(d["task_id"]))),
            "modality": None,
        }
        return [Emit("copyright-verdicts", verdict)] + close_task_effects(d)

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()


def setup(settings, tables) -> CopyrightGuard:  # noqa: ARG001 - the bank is a global table
    """An empty bank plus the feed that fills it from ``copyright-references``."""
    from models.copyright import ReferenceBank

    bank = ReferenceBank()
    feed = ReferenceFeed(settings, bank)
    feed.catch_up()
    log.info("copyright_guard: %d reference(s) loaded", len(bank))
    return CopyrightGuard(bank, feed, settings.media_max_bytes)


SPEC = AgentSpec(
    name=NAME,
    topics=("uploads", "review-decisions"),
    process=lambda topic, record: [],  # unused: ``setup`` builds the stateful core
    doc="Matches uploads against registered works (audio, image, video); gate 2 of publishing. "
        "Reads copyright-references as a global table.",
    batch_size=32,
    sinks=frozenset({"cassandra"}),
    setup=setup,
    blocking=True,
)
