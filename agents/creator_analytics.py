"""Creator analytics: per post and per creator, reach (distinct users, HyperLogLog), views,
likes, comments, shares, replies, hides, reports, the engagement rate, the meaningful-engagement
ratio, and each post's predicted virality from its early signals (an online river regressor);
materialized in ``creator_stats`` (one row per post, ``post_id ''`` for the creator's totals),
predictions emitted on ``creator-stats``.

Partitioning (why three stages)
    ``interactions`` is keyed by the acting user and ``posts-published`` by post; a post's figures
    need all its interactions in one partition, a creator's need all the signals about the
    creator's posts in one partition. So:

    1. ``analytics_signals`` (stateless; sources ``interactions``, ``posts-published``): one
       ``PostEngagement`` per interaction and per published post (PUBLISHED, carrying the
       creator), plus a REPLY on the parent of a reply post, keyed by post on
       ``post-engagements``. Ids derived from the cause, so a re-delivered input yields
       byte-identical signals.
    2. ``post_analytics`` (state per post and per partition; source ``post-engagements``): folds
       each post's signals (counts, two sketches, the early-signal windows), writes the post's
       row, and forwards each counted signal by creator on ``creator-engagements``
       (``CreatorEngagement``). Signals that arrive before the post's PUBLISHED (stage 1 read the
       two topics at different paces) wait in the post's state and are folded when it arrives.
       Per partition: a clock (largest signal time), the posts due for a prediction or for
       learning, and the virality model (:class:`models.analytics.virality.ViralityModel`).
    3. ``creator_analytics`` (state per creator; sources ``creator-engagements`` and
       ``erasure-requests``, which forgets an erased creator's totals): the creator's
       totals and sketches, written to the creator's ``''`` row.

    Stages 2 and 3 read one topic each, so their results depend only on their partition's log
    order; a replay reproduces every row and event. Redelivered copies of a signal (a stage-1 or
    stage-2 worker killed after its emits) are dropped by id (the last :data:`DEDUPE_KEEP` per
    post, :data:`DEDUPE_KEEP_CREATOR` per creator); the sketches are idempotent anyway. A
    creator's own interactions with their post are not counted.

Virality (:mod:`models.analytics.signals`, :mod:`models.analytics.virality`)
    A post's features are its signals of age below the early horizon (``analytics_horizon_h``,
    default 24 h); its label its net endorsements of age below maturity
    (``analytics_maturity_h``, default 168 h = 7 days). Every signal advances the partition
    clock, then sweeps the partition's due posts in (due time, post id) order: at
    ``published + horizon`` a post is predicted (``creator_stats`` columns
    ``predicted_engagement``, ``predicted_virality``, ``predicted_at``; a ``CreatorStats`` event
    on ``creator-stats``), at ``published + maturity`` it is learned. Signals are counted by
    their event time, so one that arrives after its post was predicted still counts in the
    post's totals but not in its features. The model is per partition of ``post-engagements``
    (4 by default: each learns from its quarter of the posts); ``pulse eval analytics`` runs one.

State
    ``analytics_posts`` (post id -> ``{"creator", "published_at", "is_reply", "counts": {kind:
    n}, "windows": {counter: n}, "reach", "engaged": base64 HLL, "pending": [[t, id, signal,
    user, dwell]], "recent": [ids], "clock", "version", "x": features at the horizon,
    "predicted": log1p scale, "cause": PUBLISHED event id}``),
    ``analytics_partitions`` (``"p<partition>"`` -> ``{"clock", "due": [[ms, post id, "predict"
    | "learn"]]}``; ``"m<partition>"`` -> the model's state, written only when it learns),
    ``analytics_creators`` (creator id -> ``{"counts", "reach", "engaged", "posts", "recent",
    "clock", "version"}``).
"""
from __future__ import annotations

import bisect
import math
from typing import Any

from agents.shared.erasure import ERASURE_TOPIC, forget_user
from models.analytics import signals as S
from models.analytics.reach import LG_K, Reach
from models.analytics.virality import ViralityModel
from streams.contracts.agent import AgentSpec, Context, Event, State
from streams.contracts.effects import Effect, Emit, StateSet, Upsert

NAME = "creator_analytics"
SIGNALS_NAME = "analytics_signals"
POSTS_NAME = "post_analytics"
MODEL = "creator_analytics.bayesian_linear_early_signals"
MODEL_VERSION = "1"
POSTS = "analytics_posts"
PARTITIONS = "analytics_partitions"
CREATORS = "analytics_creators"
VIEW = "creator_stats"
HOUR_MS = 3_600_000
#: Defaults of the settings ``analytics_horizon_h`` and ``analytics_maturity_h``.
HORIZON_H = 24.0
MATURITY_H = 168.0
#: Signal ids remembered per post / per creator to drop redelivered copies.
DEDUPE_KEEP = 512
DEDUPE_KEEP_CREATOR = 2048
#: Signals kept per post while its PUBLISHED has not arrived (more are dropped).
PENDING_KEEP = 1000
_INTERACTIONS = frozenset({"VIEW", "LIKE", "SHARE", "COMMENT", "SKIP", "HIDE", "REPORT"})


def horizon_ms(config: Any) -> int:
    """The early horizon: ``analytics_horizon_h`` of ``config`` when set, else :data:`HORIZON_H`."""
    v = getattr(config, "analytics_horizon_h", None)
    return int(float(HORIZON_H if v is None else v) * HOUR_MS)


def maturity_ms(config: Any) -> int:
    """When a post is learned: ``analytics_maturity_h`` of ``config`` when set, else
    :data:`MATURITY_H`; never before the horizon."""
    v = getattr(config, "analytics_maturity_h", None)
    return max(int(float(MATURITY_H if v is None else v) * HOUR_MS), horizon_ms(config))


def lg_k(config: Any) -> int:
    """Sketch size: ``analytics_lg_k`` of ``config`` when set, else :data:`LG_K`."""
    v = getattr(config, "analytics_lg_k", None)
    return LG_K if v is None else int(v)


# --- stage 1: re-key by post --------------------------------------------------------------------


def _signal(ctx: Context, event: Event, post_id: str, signal: str, user: str, part: str,
            creator: str | None = None, is_reply: bool = False, dwell: int | None = None) -> Emit:
    return Emit("post-engagements", {
        "event_id": ctx.derive_id(part), "event_time": event.event_time_ms, "producer": SIGNALS_NAME,
        "cause_event_id": event.event_id, "post_id": post_id, "signal": signal, "user_id": user,
        "creator_id": creator, "is_reply": is_reply, "dwell_ms": dwell})


def process_signals(state: State, event: Event, ctx: Context) -> list[Effect]:
    """One interaction or published post -> its ``PostEngagement`` signals (module docstring)."""
    r = event.record
    if event.topic == "interactions":
        kind, user, post = r.get("type"), r.get("user_id"), r.get("post_id")
        if kind not in _INTERACTIONS or not user or not post:
            return []
        return [_signal(ctx, event, post, kind, user, "post", dwell=r.get("dwell_ms"))]
    if event.topic == "posts-published":
        post, creator, parent = r.get("post_id"), r.get("creator_id"), r.get("parent_post_id")
        if not post or not creator:
            return []
        out = [_signal(ctx, event, post, "PUBLISHED", creator, "published", creator, bool(parent))]
        if parent:
            out.append(_signal(ctx, event, parent, "REPLY", creator, "reply"))
        return out
    return []


# --- stage 2: per post ---------------------------------------------------------------------------


def _new_post() -> dict:
    return {"creator": None, "published_at": None, "is_reply": False, "counts": {}, "windows": {},
            "reach": None, "engaged": None, "pending": [], "recent": [], "clock": 0, "version": 0,
            "x": None, "base": None, "predicted": None, "cause": None}


def _copy_post(st: dict) -> dict:
    return {**st, "counts": dict(st["counts"]), "windows": dict(st["windows"]),
            "pending": [list(p) for p in st["pending"]], "recent": list(st["recent"])}


def _fold(st: dict, t: int, signal: str, user: str, dwell: int | None, config: Any) -> bool:
    """Count one interaction or REPLY of a published post; False when not counted (the
    creator's own)."""
    if user == st["creator"]:
        return False
    kinds = S.kind_of(signal, dwell)
    if not kinds:
        return False
    for k in kinds:
        st["counts"][k] = st["counts"].get(k, 0) + 1
    for name in S.window_updates(kinds, t - st["published_at"], horizon_ms(config), maturity_ms(config)):
        st["windows"][name] = st["windows"].get(name, 0) + 1
    _add_user(st, signal, user, config)
    return True


def _add_user(st: dict, signal: str, user: str, config: Any) -> None:
    """Add ``user`` to the reach sketch of a post's or creator's state ``st``, and to its
    engaged sketch when ``signal`` is an engagement."""
    for field, wanted in (("reach", True), ("engaged", signal in S.ENGAGED)):
        if wanted:
            sketch = Reach.from_state(st[field], lg_k(config))
            sketch.add(user)
            st[field] = sketch.to_state()


def _forward(ctx: Context, st: dict, post_id: str, t: int, eid: str, signal: str, user: str,
             dwell: int | None) -> Emit:
    return Emit("creator-engagements", {
        "event_id": ctx.derive_id("creator", cause_event_id=eid), "event_time": t,
        "producer": POSTS_NAME, "cause_event_id": eid, "creator_id": st["creator"],
        "post_id": post_id, "signal": signal, "user_id": user, "dwell_ms": dwell})


def _stats_columns(st: dict, config: Any) -> dict[str, Any]:
    c = st["counts"]
    reach = Reach.from_state(st["reach"], lg_k(config)).estimate()
    engaged = Reach.from_state(st["engaged"], lg_k(config)).estimate()
    return {"reach": reach, "engaged": engaged, "views": c.get("VIEW", 0), "likes": c.get("LIKE", 0),
            "shares": c.get("SHARE", 0), "comments": c.get("COMMENT", 0), "replies": c.get("REPLY", 0),
            "hides": c.get("HIDE", 0), "reports": c.get("REPORT", 0), "skips": c.get("SKIP", 0),
            "long_views": c.get("LONG_VIEW", 0), **S.figures(c, reach, engaged)}


def _post_row(post_id: str, st: dict, config: Any) -> Upsert:
    return Upsert(VIEW, {"creator_id": st["creator"], "post_id": post_id,
                         "published_at": st["published_at"], "updated_at": st["clock"],
                         **_stats_columns(st, config)},
                  st["clock"] * 1000 + min(st["version"], 999))


def _touch(st: dict, t: int) -> None:
    """Advance the post's write clock (and the count of writes at that millisecond)."""
    if t > st["clock"]:
        st["clock"], st["version"] = t, 0
    else:
        st["version"] += 1


def _remember(recent: list, eid: str, keep: int) -> None:
    recent.append(eid)
    if len(recent) > keep:
        del recent[:len(recent) - keep]


def process_posts(state: State, event: Event, ctx: Context) -> list[Effect]:
    """Fold one ``PostEngagement`` into its post, after sweeping the partition's due
    predictions and learning (module docstring)."""
    if event.topic != "post-engagements":
        return []
    r, t, config = event.record, event.event_time_ms, ctx.config
    post_id, signal, eid = r.get("post_id"), r.get("signal"), r["event_id"]
    if not post_id or not signal:
        return []
    part = f"{event.partition}" if event.partition is not None else "-"
    ps = state.get(PARTITIONS, "p" + part) or {"clock": t, "due": []}
    clock = max(ps["clock"], t)
    # copied when first changed (copy on write): its entries are never changed in place, and
    # the list holds every post of the partition until its maturity
    due = ps["due"]
    sweeping = bool(due) and due[0][0] <= clock
    if sweeping or signal == "PUBLISHED":
        due = list(due)
    out: list[Effect] = []
    touched: dict[str, dict] = {}
    model: ViralityModel | None = None
    learned = False

    def post(pid: str) -> dict:
        if pid not in touched:
            got = state.get(POSTS, pid)
            touched[pid] = _copy_post(got) if got is not None else _new_post()
        return touched[pid]

    # sweep: predictions and learning due at or before the clock, in (time, post id) order
    while due and due[0][0] <= clock:
        at, pid, what = due.pop(0)
        if model is None:
            model = ViralityModel.from_state(state.get(PARTITIONS, "m" + part))
        st = post(pid)
        if what == "predict":
            out.extend(_predict(ctx, pid, st, at, model, config))
        else:
            x = st["x"] or S.features(st["windows"], st["is_reply"])
            base = st["base"] if st.get("base") is not None else S.early_engagement(st["windows"])
            model.learn(x, S.label(st["windows"]), base)
            learned = True
    st = post(post_id)
    if eid not in st["recent"]:
        _remember(st["recent"], eid, DEDUPE_KEEP)
        if signal == "PUBLISHED":
            if st["published_at"] is None and r.get("creator_id"):
                out.extend(_publish(ctx, post_id, st, r, t, due, config))
        elif st["published_at"] is None:
            if len(st["pending"]) < PENDING_KEEP:
                st["pending"].append([t, eid, signal, r.get("user_id") or "", r.get("dwell_ms")])
        elif _fold(st, t, signal, r.get("user_id") or "", r.get("dwell_ms"), config):
            _touch(st, t)
            out.append(_forward(ctx, st, post_id, t, eid, signal, r["user_id"], r.get("dwell_ms")))
            out.append(_post_row(post_id, st, config))
    for pid, s in sorted(touched.items()):
        out.append(StateSet(POSTS, pid, s))
    if learned:
        out.append(StateSet(PARTITIONS, "m" + part, model.to_state()))
    out.append(StateSet(PARTITIONS, "p" + part, {"clock": clock, "due": due}))
    return out


def _publish(ctx: Context, post_id: str, st: dict, r: dict, t: int, due: list, config: Any
             ) -> list[Effect]:
    """The post's PUBLISHED: its creator and time; the waiting signals folded; its prediction and
    learning scheduled."""
    st["creator"], st["published_at"], st["is_reply"] = r["creator_id"], t, bool(r.get("is_reply"))
    st["cause"] = r["event_id"]
    _touch(st, t)
    out: list[Effect] = [_forward(ctx, st, post_id, t, r["event_id"], "PUBLISHED", st["creator"], None)]
    for pt, peid, psig, puser, pdwell in sorted(st["pending"], key=lambda p: (p[0], p[1])):
        if _fold(st, pt, psig, puser, pdwell, config):
            _touch(st, pt)
            out.append(_forward(ctx, st, post_id, pt, peid, psig, puser, pdwell))
    st["pending"] = []
    bisect.insort(due, [t + horizon_ms(config), post_id, "predict"])
    bisect.insort(due, [t + maturity_ms(config), post_id, "learn"])
    out.append(_post_row(post_id, st, config))
    return out


def _predict(ctx: Context, post_id: str, st: dict, at: int, model: ViralityModel, config: Any
             ) -> list[Effect]:
    """The post's prediction at the end of its early horizon ``at``: a ``creator_stats`` update
    and a ``CreatorStats`` event."""
    x = S.features(st["windows"], st["is_reply"])
    base = S.early_engagement(st["windows"])
    predicted = model.predict(x, base)
    virality = model.virality(predicted)
    st["x"], st["base"], st["predicted"] = x, base, predicted
    engagement = math.expm1(max(predicted, 0.0))
    version = f"{MODEL}@{MODEL_VERSION}"
    cols = _stats_columns(st, config)
    event = {
        "event_id": ctx.derive_id("predicted", cause_event_id=st["cause"]), "event_time": at,
        "producer": POSTS_NAME, "cause_event_id": st["cause"], "model": MODEL,
        "model_version": MODEL_VERSION, "creator_id": st["creator"], "post_id": post_id,
        "window_start": st["published_at"], "window_end": at, "predicted_virality": virality,
        "predicted_engagement": engagement, "horizon_ms": at - st["published_at"],
        **{k: cols[k] for k in ("reach", "views", "likes", "comments", "shares", "hides", "reports",
                                "replies", "long_views", "engagement_rate",
                                "meaningful_engagement_ratio")}}
    return [Emit("creator-stats", event),
            Upsert(VIEW, {"creator_id": st["creator"], "post_id": post_id,
                          "predicted_engagement": engagement, "predicted_virality": virality,
                          "predicted_at": at, "model_version": version}, at * 1000)]


# --- stage 3: per creator ---------------------------------------------------------------------


def process(state: State, event: Event, ctx: Context) -> list[Effect]:
    """Fold one ``CreatorEngagement`` into its creator's totals and write the creator's row; an
    erasure request forgets the creator's totals."""
    if event.topic == ERASURE_TOPIC:
        return forget_user(state, event, NAME, (CREATORS,))
    if event.topic != "creator-engagements":
        return []
    r, t, config = event.record, event.event_time_ms, ctx.config
    creator, signal, user = r.get("creator_id"), r.get("signal"), r.get("user_id") or ""
    if not creator or not signal:
        return []
    got = state.get(CREATORS, creator)
    st = ({"counts": {}, "reach": None, "engaged": None, "posts": 0, "recent": [], "clock": 0, "version": 0}
          if got is None else {**got, "counts": dict(got["counts"]), "recent": list(got["recent"])})
    if r["event_id"] in st["recent"]:
        return []
    _remember(st["recent"], r["event_id"], DEDUPE_KEEP_CREATOR)
    if signal == "PUBLISHED":
        st["posts"] += 1
    else:
        kinds = S.kind_of(signal, r.get("dwell_ms"))
        for k in kinds:
            st["counts"][k] = st["counts"].get(k, 0) + 1
        if kinds:
            _add_user(st, signal, user, config)
    _touch(st, t)
    return [StateSet(CREATORS, creator, st),
            Upsert(VIEW, {"creator_id": creator, "post_id": "", "posts": st["posts"],
                          "updated_at": st["clock"], **_stats_columns(st, config)},
                   st["clock"] * 1000 + min(st["version"], 999))]


SIGNALS_SPEC = AgentSpec(
    name=SIGNALS_NAME,
    topics=("interactions", "posts-published"),
    process=process_signals,
    outputs=("post-engagements",),
    doc="Re-keys interactions and published posts by post for post_analytics (stateless).",
)

POSTS_SPEC = AgentSpec(
    name=POSTS_NAME,
    topics=("post-engagements",),
    process=process_posts,
    outputs=("creator-engagements", "creator-stats"),
    tables=(POSTS, PARTITIONS),
    doc="Per-post reach (HLL), engagement and predicted virality (online river regressor).",
    sinks=frozenset({"cassandra"}),
)

SPEC = AgentSpec(
    name=NAME,
    topics=("creator-engagements", ERASURE_TOPIC),
    process=process,
    tables=(CREATORS,),
    doc="Per-creator reach (HLL) and engagement totals.",
    sinks=frozenset({"cassandra"}),
)
