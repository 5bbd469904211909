"""The publish gate: joins the gates' verdicts by ``post_id`` and releases a post to distribution
(``posts-published``) only when every enabled gate allowed it.

Sources (all keyed by ``post_id``, all with the same partition count, so one post's events meet
in one partition and one worker): ``uploads``, ``moderation-verdicts`` (Content Guard),
``copyright-verdicts`` (Copyright Guard) and ``content-enriched`` (CLIP AI: not a gate; its
categories and quality ride along when they arrived first).

State: one changelogged table row per post (``gates``), a JSON object::

    {"upload": {...}, "moderation": {...}, "copyright": {...}, "enrichment": {...},
     "status": "PENDING" | "IN_REVIEW" | "PUBLISHED" | "RESTRICTED" | "BLOCKED" | "TAKEN_DOWN",
     "published_event_id": str | None, "status_ts": int (last status write timestamp, µs),
     "folded": int (events folded), "latest_at": int (latest event time folded, ms)}

Decision rule, applied after every event of the post (the gates are ``settings.gates``):

* any enabled gate's latest verdict is BLOCK -> ``BLOCKED`` (never published; the reasons are
  the gates' own, written to the ``posts`` view's ``status_reasons``);
* otherwise, a verdict still REVIEW -> ``IN_REVIEW`` (a moderator's decision, which Content
  Guard turns into a HUMAN-tier verdict, decides it later);
* otherwise, once the upload, every enabled gate's verdict and (with the ``enrichment`` gate)
  CLIP AI's enrichment are in: publish, with distribution RESTRICTED if any gate said RESTRICT
  (shown to followers, never recommended), else FULL.

A verdict from the HUMAN tier (a copyright verdict whose model is ``human-review``) supersedes
automatic ones whatever their times; otherwise the later verdict (by ``event_time``) wins.

Once CLIP AI's enrichment is in (the post's vector point exists), the post's point in the
``content`` collection gets ``published``, ``gate_status``, ``moderation_action`` and
``distribution`` in its payload, so search hides what the gates did not allow.

A post is published at most once: the table remembers it,
and the ``posts-published`` event id is derived from the post id, so a re-delivery after a lost
table still writes the same event. A published post that a later verdict blocks (a moderator's
BLOCK after reports, a copyright match found later) is **taken down**: status TAKEN_DOWN, one
``takedowns`` event (id derived from the post id) and a ``takedowns`` row, which every feed read
filters at once, and its search marks say unpublished.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Sequence

from agents.shared.search import CONTENT_COLLECTION
from streams.contracts.agent import AgentSpec, Context, Event, State, derived_event_id, dt_of, ms_of
from streams.contracts.effects import Effect, Emit, StateSet, Upsert, VectorSetPayload

log = logging.getLogger("pulse.publisher")

NAME = "publisher"
SOURCES = ("uploads", "moderation-verdicts", "copyright-verdicts", "content-enriched")
GATE_TOPICS = {"moderation-verdicts": "moderation", "copyright-verdicts": "copyright"}
#: How long a post lives, by content type (PostPublished.expires_at). FLASH: 24 hours, as the
#: platform defines it; MEMORY: the platform's default time box of 7 days (an upload carries no
#: box of its own in Upload v2); FOREVER: no expiry.
LIFETIME = {"FLASH": timedelta(hours=24), "MEMORY": timedelta(days=7), "FOREVER": None}
_SEVERITY = {"ALLOW": 0, "RESTRICT": 1, "REVIEW": 2, "BLOCK": 3}


class GateJoin:
    """The publisher's decision logic for ``settings.gates``.

    Parameters
    ----------
    gates:
        What to wait for, a subset of ``("moderation", "copyright", "enrichment")``
        (``streams.settings.GATES``); ``enrichment`` is readiness, not a decision.
    """

    def __init__(self, gates: Sequence[str]):
        self.gates = tuple(gates)
        self.verdict_gates = tuple(g for g in self.gates if g in GATE_TOPICS.values())

    def process(self, post: dict[str, Any] | None, topic: str, record: dict[str, Any]
                ) -> tuple[dict[str, Any] | None, list[Effect]]:
        """Fold one event into the post's state and decide: ``(new state or None when the event
        changes nothing, effects)``."""
        state = dict(post or {})
        if not self._fold(state, topic, record):
            return None, []
        state["folded"] = state.get("folded", 0) + 1
        state["latest_at"] = max(state.get("latest_at", 0), ms_of(record["event_time"]))
        effects = self._decide(record["post_id"], state)
        return state, effects

    # -- folding events into the post's state -------------------------------------------------

    def _fold(self, state: dict[str, Any], topic: str, record: dict[str, Any]) -> bool:
        """Merge one event into ``state``; False when it changes nothing (duplicate, comment)."""
        at = ms_of(record["event_time"])
        if topic == "uploads":
            if state.get("upload", {}).get("event_id") == record["event_id"]:
                return False
            state["upload"] = {
                "event_id": record["event_id"], "at": at, "creator_id": record["creator_id"],
                "kind": record["kind"], "content_type": record["content_type"],
                "hashtags": list(record.get("hashtags") or []),
                "parent_post_id": record.get("parent_post_id")}
            return True
        if topic == "content-enriched":
            if state.get("enrichment", {}).get("event_id") == record["event_id"]:
                return False
            state["enrichment"] = {"event_id": record["event_id"], "at": at,
                                   "categories": dict(record.get("categories") or {}),
                                   "quality_score": record.get("quality_score")}
            return True
        gate = GATE_TOPICS.get(topic)
        if gate is None or (gate == "moderation" and record.get("comment_id")):
            return False  # a comment's verdict does not gate its post
        tier = record.get("tier") or ("HUMAN" if record.get("model") == "human-review" else "AUTO")
        new = {"event_id": record["event_id"], "at": at, "action": record["action"], "tier": tier,
               "reasons": list(record.get("reasons") or [])}
        old = state.get(gate)
        if old is not None:
            if old["event_id"] == new["event_id"]:
                return False
            human_old, human_new = old["tier"] == "HUMAN", tier == "HUMAN"
            if (human_old and not human_new) or (
                    human_old == human_new and (old["at"], old["event_id"]) > (at, new["event_id"])):
                return False  # an older or an automatic verdict cannot override (ties: event id)
        state[gate] = new
        return True

    # -- deciding ------------------------------------------------------------------------------

    def _decide(self, post_id: str, state: dict[str, Any]) -> list[Effect]:
        verdicts = {g: state[g] for g in self.verdict_gates if g in state}
        worst = max((v["action"] for v in verdicts.values()), key=_SEVERITY.__getitem__,
                    default="ALLOW")
        if state.get("status") in ("PUBLISHED", "RESTRICTED") and worst == "BLOCK":
            return self._take_down(post_id, state, verdicts)
        if state.get("status") in ("PUBLISHED", "RESTRICTED", "TAKEN_DOWN") or "upload" not in state:
            return self._status_effects(post_id, state, state.get("status"))
        if worst == "BLOCK":
            status = "BLOCKED"
        elif worst == "REVIEW":
            status = "IN_REVIEW"
        elif len(verdicts) < len(self.verdict_gates) or (
                "enrichment" in self.gates and "enrichment" not in state):
            status = "PENDING"
        else:
            status = "RESTRICTED" if worst == "RESTRICT" else "PUBLISHED"
        effects = []
        if status in ("PUBLISHED", "RESTRICTED"):
            effects.append(Emit("posts-published", self._published(post_id, state, status)))
            state["published_event_id"] = effects[0].record["event_id"]
        state["status"] = status
        return effects + self._status_effects(post_id, state, status)

    def _take_down(self, post_id: str, state: dict[str, Any], verdicts: dict[str, Any]) -> list[Effect]:
        """A published post blocked by a later verdict: the ``takedowns`` event and row, and the
        post's status TAKEN_DOWN (search drops it through the status marks)."""
        gate, verdict = max(((g, v) for g, v in verdicts.items() if v["action"] == "BLOCK"),
                            key=lambda gv: (gv[1]["at"], gv[1]["event_id"]))
        up = state["upload"]
        record = {
            "event_id": derived_event_id(NAME, post_id, "takedown"),
            "event_time": dt_of(verdict["at"]), "producer": NAME, "cause_event_id": verdict["event_id"],
            "post_id": post_id, "creator_id": up["creator_id"], "gate": gate,
            "reasons": list(verdict["reasons"]), "published_event_id": state.get("published_event_id")}
        state["status"] = "TAKEN_DOWN"
        return [Emit("takedowns", record),
                Upsert("takedowns", {"bucket": 0, "post_id": post_id, "creator_id": up["creator_id"],
                                     "taken_down_at": verdict["at"], "gate": gate,
                                     "reasons": list(verdict["reasons"])}, verdict["at"] * 1000)
                ] + self._status_effects(post_id, state, "TAKEN_DOWN")

    def _status_effects(self, post_id: str, state: dict[str, Any], status: str | None) -> list[Effect]:
        if "upload" not in state or status is None:
            return []
        reasons = [f"{g}: {r}" for g in self.verdict_gates if g in state for r in state[g]["reasons"]]
        # The gates' events reach the join in any order across topics, so the latest event time
        # can repeat for a newer decision; Cassandra would then keep the greater value, not the
        # newer one. Each status write of a post gets a strictly larger timestamp instead: the
        # latest event time folded so far (µs; of every folded event, also of a verdict since
        # superseded, e.g. a REVIEW by an earlier-stamped HUMAN decision, so it never decreases)
        # plus the number of events folded so far. Both depend on the set of events seen, not
        # on their order, so a replay writes the same final cells.
        at = max([state.get("latest_at", 0), state["upload"]["at"]]
                 + [state[g]["at"] for g in self.gates if g in state])
        ts = max(at * 1000 + state.get("folded", 0), state.get("status_ts", 0) + 1)
        state["status_ts"] = ts
        effects: list[Effect] = [Upsert("posts", {"post_id": post_id, "status": status,
                                                  "status_reasons": reasons}, ts)]
        if "enrichment" in state and status != "PENDING":
            # clip_ai wrote the post's point before it emitted the enrichment: mark it for search
            effects.append(VectorSetPayload(CONTENT_COLLECTION, (post_id,), {
                "published": status in ("PUBLISHED", "RESTRICTED"), "gate_status": status,
                "moderation_action": (state.get("moderation") or {}).get("action"),
                "distribution": "RESTRICTED" if status == "RESTRICTED" else
                ("FULL" if status == "PUBLISHED" else None)}))
        return effects

    def _published(self, post_id: str, state: dict[str, Any], status: str) -> dict[str, Any]:
        up = state["upload"]
        gate_times = [state[g]["at"] for g in self.gates if g in state]
        at = max([up["at"]] + gate_times)  # deterministic: a replay emits the same event
        life = LIFETIME.get(up["content_type"])
        enrichment = state.get("enrichment") or {}
        return {
            "event_id": derived_event_id(NAME, post_id, "published"),
            "event_time": dt_of(at), "producer": NAME,
            "cause_event_id": max(((state[g]["at"], state[g]["event_id"]) for g in self.verdict_gates
                                   if g in state), default=(0, up["event_id"]))[1],
            "post_id": post_id, "creator_id": up["creator_id"], "kind": up["kind"],
            "content_type": up["content_type"],
            "distribution": "RESTRICTED" if status == "RESTRICTED" else "FULL",
            "uploaded_at": dt_of(up["at"]),
            "expires_at": None if life is None else dt_of(up["at"]) + life,
            "hashtags": up["hashtags"],
            "categories": enrichment.get("categories") or {},
            "quality_score": enrichment.get("quality_score"),
            "parent_post_id": up.get("parent_post_id"),
            "moderation_event_id": (state.get("moderation") or {}).get("event_id"),
            "copyright_event_id": (state.get("copyright") or {}).get("event_id"),
            "enrichment_event_id": enrichment.get("event_id"),
        }


def load(config) -> GateJoin:
    """The decision logic for ``config.gates`` (``PULSE_GATES``)."""
    return GateJoin(config.gates)


def process(state: State, event: Event, ctx: Context) -> list[Effect]:
    """Fold the event into its post's row of the ``gates`` table and decide (module docstring)."""
    post_id = event.record["post_id"]
    new, effects = ctx.models.process(state.get("gates", post_id), event.topic, event.record)
    if new is None:
        return []
    return effects + [StateSet("gates", post_id, new)]


SPEC = AgentSpec(
    name=NAME,
    topics=SOURCES,
    process=process,
    outputs=("posts-published", "takedowns"),
    load=load,
    doc="Joins the gates' verdicts by post and emits posts-published when every enabled gate allows.",
    batch_size=500,
    sinks=frozenset({"cassandra", "vectors"}),
    tables=("gates",),
)
