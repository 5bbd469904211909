"""Trend Detector: trending hashtags and categories, as bursts against each subject's own
baseline rate; emitted on ``trends`` (started, ongoing, ended) and materialized in ``trending``
(current trends) and ``trend_heavy_hitters`` (the most mentioned subjects of the window).

Partitioning (why two stages)
    Agent state is keyed like the source topic, and ``posts-published`` is keyed by post, so a
    detector reading it would see in each partition only that partition's share of a hashtag's
    mentions: four partitions would each count a quarter, and a burst spread over them would be
    missed (or a quarter of the baseline compared with a quarter of the burst, with a quarter of
    the statistical power). So the system is two agents:

    1. ``trend_mentions`` (stateless, source ``posts-published``): one ``TrendMention`` event per
       hashtag and category a post mentions (:func:`models.trends.subjects.subjects_of`), keyed
       by subject, on ``trend-mentions``. Its ids are derived from the publish event and the
       subject, so a re-delivered post yields byte-identical mentions.
    2. ``trend_detector`` (stateful, source ``trend-mentions``): every mention of a subject lands
       in the same partition, so its counts, baseline and lifecycle are exact however many
       partitions and workers there are (:mod:`models.trends.burst`).

    Counting is by event time only (the post's publication time), never by arrival. Each
    partition keeps a clock, the largest event time it has seen (its watermark); a subject's
    window is the one ending at that clock, and mentions older than the window are late and not
    counted. Because a subject that stops being mentioned has no event of its own to end its
    trend, every mention also sweeps the partition's active trends once per slot
    (``trend_partitions`` state: clock, active trends, heavy-hitter sketch), which emits their
    ONGOING and ENDED events. All of this depends only on the order of one partition's log, so
    a replay reproduces every event (ids: ``derive_id`` of the subject and its transition
    number). Redelivered copies of a mention (a stage-1 worker killed after its emits) are
    dropped by id (the last ``dedupe_keep`` per subject).

Ranks and heavy hitters are per partition (subjects are hash-partitioned, so partitions hold
disjoint subjects): an event's ``rank`` is its place among its partition's active trends of the
same kind by burst score (0 for ENDED); the read side (``streams.query.trends``) ranks all
partitions' trends together, and merges the partitions' heavy hitters, which are exact unions
because no subject is in two partitions.

State: ``trend_subjects`` (``"KIND:subject"`` -> :func:`models.trends.burst.new_state`'s dict),
``trend_partitions`` (``"p<partition>"`` -> ``{"clock": ms, "since": first clock ms,
"version": writes at this clock ms, "active": {key: [slot, z]}, "sketch": WindowSketch json}``).
No trend starts before a partition has observed ``warmup_windows`` windows (``since``).

Constants: :class:`models.trends.burst.TrendParams`'s defaults, overridden by the settings
attributes ``trend_slot_s``, ``trend_window_slots``, ``trend_half_life_h``, ``trend_bias``,
``trend_z_start``, ``trend_z_end``, ``trend_min_count`` when a settings object has them
(:func:`params_of`). Interactions are not counted: a like says nothing new about which subjects
are being posted about, and the issue's trends are about posting.
"""
from __future__ import annotations

from typing import Any

from models.trends import burst as B
from models.trends.heavy import WindowSketch
from models.trends.subjects import subjects_of
from streams.contracts.agent import AgentSpec, Context, Event, State, ms_of
from streams.contracts.effects import Effect, Emit, StateSet, Upsert

NAME = "trend_detector"
MENTIONS_NAME = "trend_mentions"
MODEL = "trend_detector.signitrend_window"
MODEL_VERSION = "1"
SUBJECTS = "trend_subjects"
PARTITIONS = "trend_partitions"
#: Heavy hitters written per partition and kind to ``trend_heavy_hitters``.
HEAVY_HITTERS = 20

_SETTING_FIELDS = {  # settings attribute -> (TrendParams field, conversion)
    "trend_slot_s": ("slot_ms", lambda v: int(float(v) * 1000)),
    "trend_window_slots": ("window_slots", int),
    "trend_half_life_h": ("half_life_ms", lambda v: int(float(v) * 3_600_000)),
    "trend_bias": ("bias", float),
    "trend_z_start": ("z_start", float),
    "trend_z_end": ("z_end", float),
    "trend_min_count": ("min_count", int),
}


def params_of(config: Any) -> B.TrendParams:
    """The detector's constants: :class:`TrendParams` defaults, overridden by ``config``'s
    ``trend_*`` attributes (see the module docstring) where present and not None."""
    given = {}
    for attr, (fld, conv) in _SETTING_FIELDS.items():
        v = getattr(config, attr, None)
        if v is not None:
            given[fld] = conv(v)
    return B.TrendParams(**given)


# --- stage 1: re-key posts by subject -------------------------------------------------------------


def process_mentions(state: State, event: Event, ctx: Context) -> list[Effect]:
    """One published post -> a ``TrendMention`` per subject it mentions (none for a RESTRICTED
    post, which is never recommended, nor for a post with no usable hashtag or category)."""
    r = event.record
    if event.topic != "posts-published" or r.get("distribution") == "RESTRICTED":
        return []
    out: list[Effect] = []
    for kind, subject in subjects_of(r.get("hashtags"), r.get("categories")):
        out.append(Emit("trend-mentions", {
            "event_id": ctx.derive_id(f"{kind}:{subject}"), "event_time": event.event_time_ms,
            "producer": MENTIONS_NAME, "cause_event_id": event.event_id, "subject_kind": kind,
            "subject": subject, "post_id": r["post_id"], "creator_id": r["creator_id"]}))
    return out


# --- stage 2: detect per subject --------------------------------------------------------------------


def _view_row(kind: str, subject: str, st: dict, tr: B.Transition, clock: int) -> Upsert:
    r = tr.reading
    return Upsert("trending", {
        "subject_kind": kind, "subject": subject, "state": tr.state, "started_at": tr.since,
        "updated_at": clock, "window_start": r.window_start, "window_end": r.window_end,
        "count": r.count, "baseline_count": r.expected, "burst_score": r.z,
        "sample_post_ids": B.sample_post_ids(st), "model_version": f"{MODEL}@{MODEL_VERSION}"},
        clock * 1000 + min(tr.seq, 999))


def process(state: State, event: Event, ctx: Context) -> list[Effect]:
    """Count one mention, advance its subject's lifecycle and sweep the partition's other active
    trends to the partition clock (see the module docstring)."""
    if event.topic != "trend-mentions":
        return []
    rec = event.record
    kind, subject = rec.get("subject_kind"), rec.get("subject")
    if kind not in ("HASHTAG", "CATEGORY") or not isinstance(subject, str) or not subject:
        return []
    p = params_of(ctx.config)
    key = f"{kind}:{subject}"
    part = f"p{event.partition}" if event.partition is not None else "p-"
    t = event.event_time_ms
    ps = state.get(PARTITIONS, part) or {"clock": t, "since": t, "active": {}, "sketch": None}
    old_clock = ps["clock"]
    clock = max(old_clock, t)
    slot = clock // p.slot_ms
    may_start = clock - ps["since"] >= p.warmup_windows * p.window_ms
    active = {k: list(v) for k, v in ps["active"].items()}
    sketch = WindowSketch.from_json(ps["sketch"])

    st = _copy(state.get(SUBJECTS, key)) or B.new_state()
    if B.add_mention(st, t, clock, p, rec["event_id"], rec.get("post_id")):
        sketch.update(t // p.slot_ms, key)
    changed: dict[str, tuple[dict, B.Transition | None]] = {key: (st, B.evaluate(st, clock, p, may_start))}
    for other in sorted(active):  # sweep: once per slot per active trend
        if other != key and active[other][0] < slot:
            ost = _copy(state.get(SUBJECTS, other)) or B.new_state()
            changed[other] = (ost, B.evaluate(ost, clock, p, may_start))

    for k, (s, tr) in changed.items():
        if s["trend"] is None:
            active.pop(k, None)
        elif tr is not None:
            active[k] = [tr.reading.slot, tr.reading.z]
    out: list[Effect] = []
    for k, (s, tr) in sorted(changed.items()):
        out.append(StateSet(SUBJECTS, k, s))
        if tr is None:
            continue
        k_kind, k_subject = k.split(":", 1)
        rank = 0 if tr.state == B.ENDED else 1 + sum(
            1 for a, (_, z) in active.items() if a != k and a.startswith(k_kind + ":")
            and (z, a) > (tr.reading.z, k))
        r = tr.reading
        out.append(Emit("trends", {
            "event_id": ctx.derive_id(f"{k}#{tr.seq}", cause_event_id=k),
            "event_time": clock, "producer": NAME, "cause_event_id": event.event_id,
            "model": MODEL, "model_version": MODEL_VERSION, "subject_kind": k_kind,
            "subject": k_subject, "state": tr.state, "window_start": r.window_start,
            "window_end": r.window_end, "count": r.count, "baseline_count": r.expected,
            "burst_score": r.z, "rank": rank, "sample_post_ids": B.sample_post_ids(s)}))
        out.append(_view_row(k_kind, k_subject, s, tr, clock))

    lo = slot - p.window_slots + 1
    sketch.expire(lo)
    version = ps.get("version", 0) + 1 if clock == old_clock else 0
    out.extend(_heavy_hitter_rows(sketch, part, lo, slot, clock * 1000 + min(version, 999), p))
    out.append(StateSet(PARTITIONS, part, {"clock": clock, "since": ps["since"], "version": version, "active": active,
                                            "sketch": sketch.to_json()}))
    return out


def _heavy_hitter_rows(sketch: WindowSketch, part: str, lo: int, hi: int, ts_us: int,
                       p: B.TrendParams) -> list[Effect]:
    """The partition's heavy hitters of the window, one row per kind, written at ``ts_us`` (the
    clock, plus the number of earlier writes at the same clock millisecond, so the newest
    wins; the sink keeps only the newest upsert of a row per flush)."""
    top = sketch.top(lo, hi, n=4 * HEAVY_HITTERS)
    rows = []
    for kind in ("HASHTAG", "CATEGORY"):
        mine = [h for h in top if h.item.startswith(kind + ":")][:HEAVY_HITTERS]
        rows.append(Upsert("trend_heavy_hitters", {
            "subject_kind": kind, "partition_key": part, "window_start": lo * p.slot_ms,
            "window_end": (hi + 1) * p.slot_ms, "updated_at": ts_us // 1000,
            "counts": {h.item.split(":", 1)[1]: h.estimate for h in mine}}, ts_us))
    return rows


def _copy(st: dict | None) -> dict | None:
    if st is None:
        return None
    return {**st, "slots": [list(c) for c in st["slots"]], "samples": [list(x) for x in st["samples"]],
            "recent": list(st["recent"]), "trend": dict(st["trend"]) if st["trend"] else None}


MENTIONS_SPEC = AgentSpec(
    name=MENTIONS_NAME,
    topics=("posts-published",),
    process=process_mentions,
    outputs=("trend-mentions",),
    doc="Re-keys published posts by hashtag and category for trend_detector (stateless).",
)

SPEC = AgentSpec(
    name=NAME,
    topics=("trend-mentions",),
    process=process,
    outputs=("trends",),
    tables=(SUBJECTS, PARTITIONS),
    doc="Trending hashtags and categories: bursts against each one's own baseline, heavy hitters.",
    sinks=frozenset({"cassandra"}),
)
