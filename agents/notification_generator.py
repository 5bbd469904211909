"""Notification Generator: decides, per user, which candidate notifications are worth sending
now, which wait for a digest and which are dropped, by a Thompson-sampling bandit per user and
notification type rewarded by the user's own reactions; every decision goes out on
``notifications`` with its propensity and is materialized in ``notifications`` (the view).

Partitioning (why two stages)
    A decision is about one recipient: their budget, their quiet hours, their posteriors, their
    held items. But the events that make candidates are keyed by someone else: ``interactions``
    by the acting user (the liker, not the author liked), ``follows`` by the follower,
    ``posts-published`` by post, ``trends`` by subject, ``golden-moments`` by creator. Agent state
    is keyed like its source topic, so:

    1. ``notification_candidates`` (stateless; sources ``interactions``, ``follows``,
       ``posts-published``, ``trends``, ``golden-moments``): one ``NotificationCandidate`` per
       recipient on ``notification-candidates`` (key user_id). Who the recipient is comes from
       side inputs read as of the event's time: the post's creator (``posts-published``: likes,
       comments and shares of your post; answers to it), the creator's followers (``follows``:
       a followed creator posted; at most :data:`MAX_FANOUT`), users whose profile affinity to a
       trending subject is at least :data:`TREND_MIN_AFFINITY` (``profiles``; at most
       :data:`TREND_MAX_RECIPIENTS`). Ids are derived from the cause and the recipient, so a
       re-delivered input yields byte-identical candidates.
    2. ``notification_generator`` (state ``notification_users`` keyed by user; sources
       ``notification-candidates`` and ``notification-feedback``, both keyed by user_id with the
       same partition count): a user's candidates and reactions meet in one partition, so the
       posteriors, the budget and the digest are exact with any number of partitions and
       workers. The user's active-hours histogram (quiet hours) is a global side input over
       ``profiles`` (:class:`agents.shared.activity.AudienceActivity`, as of the last complete
       hour).

    A decision depends on the feedback folded before it, so the agent is ``order_sensitive``:
    a live worker interleaves the two topics by arrival, a replay by Kafka timestamp; each is
    deterministic given its order (randomness only from ``ctx.rng``, seeded by the candidate's
    id; ids from ``ctx.derive_id``; times from the events).

Decisions (:mod:`models.notifications`): the feasible actions (SEND outside quiet hours within
the daily budget, HOLD unless digests are muted, nothing but DROP for a muted type), then
:func:`models.notifications.bandit.decide` on the (user, type) arms. Every decision is a
``Notification`` (v2) whose ``notification_id`` is its ``event_id``: SEND (channel PUSH),
HOLD or DROP (channel IN_APP; not to be delivered), with ``propensity`` and
``action_probabilities``. Held items go out as one DIGEST (action SEND, propensity 1: no
randomness) per :func:`models.notifications.policy.digest_due`.

Feedback: ``notification-feedback`` names a notification; SEND notifications update the type's
SEND arm, digest items (feedback naming a HOLD decision's id) its HOLD arm; feedback on a digest
itself passes DELIVERED / DISMISSED to each of its items; MUTED turns the type (or, for a
DIGEST, digests) off for the user. Feedback on an id the state no longer holds updates no arm
(a MUTED still mutes). Each notification's reactions count once (the flags of
:func:`models.notifications.bandit.update`), so a re-delivered feedback changes nothing;
re-delivered candidates are dropped by id (the last :data:`SEEN_KEEP`).

View ``notifications`` (one row per SEND, HOLD and DIGEST, newest first; DROPs only on the
topic): status SENT / HELD, then DIGESTED for held items, then the strongest reaction
(DELIVERED < DISMISSED < OPENED < ACTED < MUTED).

Erasure: ``erasure-requests`` (also keyed by user) forgets the user's entry
(:mod:`agents.shared.erasure`); other users' entries may still name the erased user as a
notification's actor.

State (``notification_users``, one JSON object per user)::

    {"arms": {type: {"SEND": [alpha, beta], "HOLD": [alpha, beta]}}, "day": UTC day,
     "sent": sent on their own that day, "held": [[notification_id, type, post_id, actor_id,
     held_at ms, candidate event id], ...], "digests": digests emitted, "muted": [type, ...],
     "open": {notification_id: [type, kind SEND|HOLD|DIGEST, sent_at ms, flags, status rank,
     status writes, [digest item ids]]}, "seen": [candidate event ids' 64-bit digests],
     "digest_sizes": [digests, items they bundled]}   # absent in states written before v2

HOLD's cost is the user's share of a digest (:func:`models.notifications.policy.hold_cost`):
``send_cost`` over the user's expected items per digest, from ``digest_sizes``.

Constants: :class:`models.notifications.policy.PolicyParams`'s defaults, overridden by the
settings attributes ``notification_daily_budget``, ``notification_quiet_share``,
``notification_digest_interval_h``, ``notification_digest_max_items``,
``notification_send_cost``, ``notification_hold_cost`` and ``notification_exploration`` where a
settings object has them (:func:`params_of`).
"""
from __future__ import annotations

import hashlib
from typing import Any

from agents.shared.activity import open_audience_activity
from agents.shared.affinities import open_subject_affinities
from agents.shared.erasure import ERASURE_TOPIC, forget_user
from agents.shared.posts import PublishedPosts, open_published
from agents.shared.social import open_follow_graph
from models.notifications import bandit as B
from models.notifications import policy as P
from streams.contracts.agent import AgentSpec, Context, Event, SideInput, State, ms_of
from streams.contracts.effects import Effect, Emit, StateSet, Upsert

NAME = "notification_generator"
CANDIDATES_NAME = "notification_candidates"
MODEL = "notification_generator.thompson_beta"
#: 2: HOLD costs the user's share of a digest (``send_cost`` over their expected digest size).
#: 3: Thompson sampling's probabilities computed by quadrature instead of estimated from 64
#: posterior draws (:func:`models.notifications.bandit.thompson_probabilities`).
MODEL_VERSION = "3"
TABLE = "notification_users"
VIEW = "notifications"
#: Followers told about a creator's new post, at most (the first by user id): a larger
#: audience hears of it through feeds, not pushes.
MAX_FANOUT = 5000
#: Profile affinity (user_profiler's [-1, 1] scale) from which a trending subject is "in your
#: interests", and how many of the most interested users hear of one trend at most.
TREND_MIN_AFFINITY = 0.3
TREND_MAX_RECIPIENTS = 1000
#: A golden moment is "near" when its window starts within this long of the recommendation;
#: only the FOREVER window is announced (the three content types' windows mostly coincide).
GOLDEN_LEAD_MS = 24 * 3_600_000
GOLDEN_CONTENT_TYPES = frozenset({"FOREVER"})
#: Candidate ids remembered per user (re-delivered copies are dropped), and notifications whose
#: feedback is still folded into the arms (the oldest are forgotten first).
SEEN_KEEP = 256
OPEN_KEEP = 500
#: How long a notification's feedback is still folded in (7 days): apps report deliveries, opens
#: and dismissals within minutes to hours, and a held item waits for its digest at most a digest
#: interval plus the user's quiet hours. Without it, every active user kept :data:`OPEN_KEEP`
#: entries (about 30 KB of state written to the changelog at each of their candidates).
OPEN_TTL_MS = 7 * 86_400_000
ENGAGEMENT_TYPES = {"LIKE": "LIKE", "COMMENT": "COMMENT", "SHARE": "SHARE"}
STATUS_RANK = {"DELIVERED": 1, "DISMISSED": 2, "OPENED": 3, "ACTED": 4, "MUTED": 5}
STATUS_OF_RANK = {v: k for k, v in STATUS_RANK.items()}

_SETTING_FIELDS = {  # settings attribute -> (PolicyParams field, conversion)
    "notification_daily_budget": ("daily_budget", int),
    "notification_quiet_share": ("quiet_share", float),
    "notification_digest_interval_h": ("digest_interval_ms", lambda v: int(float(v) * 3_600_000)),
    "notification_digest_max_items": ("digest_max_items", int),
    "notification_send_cost": ("send_cost", float),
    "notification_hold_cost": ("hold_cost", float),
    "notification_exploration": ("exploration", float),
}


def params_of(config: Any) -> P.PolicyParams:
    """The generator's constants: :class:`PolicyParams` defaults, overridden by ``config``'s
    ``notification_*`` attributes (module docstring) where present and not None."""
    given = {}
    for attr, (fld, conv) in _SETTING_FIELDS.items():
        v = getattr(config, attr, None)
        if v is not None:
            given[fld] = conv(v)
    return P.PolicyParams(**given)


# --- stage 1: re-key candidates by recipient ---------------------------------------------------


def _candidate(ctx: Context, event: Event, user: str, kind: str, *, post_id: str | None = None,
               actor_id: str | None = None, subject: str | None = None, due_at: int | None = None) -> Emit:
    return Emit("notification-candidates", {
        "event_id": ctx.derive_id(f"{kind}:{user}"), "event_time": event.event_time_ms,
        "producer": CANDIDATES_NAME, "cause_event_id": event.event_id, "user_id": user, "type": kind,
        "post_id": post_id, "actor_id": actor_id, "subject": subject, "due_at": due_at})


def process_candidates(state: State, event: Event, ctx: Context) -> list[Effect]:
    """One interaction, follow, published post, trend or golden moment -> the
    ``NotificationCandidate`` events it implies, one per recipient (module docstring); nothing
    for one's own actions, unknown posts, non-engagements, RESTRICTED posts' followers, ongoing
    or ended trends, or a golden moment that is not near."""
    r, t = event.record, event.event_time_ms
    if event.topic == "interactions":
        kind = ENGAGEMENT_TYPES.get(str(r.get("type")))
        posts: PublishedPosts | None = ctx.side.get("published")
        facts = posts.get(r.get("post_id"), t) if kind and posts is not None else None
        if facts is None or not r.get("user_id") or facts.creator_id == r["user_id"]:
            return []
        return [_candidate(ctx, event, facts.creator_id, kind, post_id=facts.post_id, actor_id=r["user_id"])]
    if event.topic == "follows":
        a, b = r.get("follower_id"), r.get("followee_id")
        if r.get("action") != "FOLLOW" or not a or not b or a == b:
            return []
        return [_candidate(ctx, event, b, "FOLLOW", actor_id=a)]
    if event.topic == "posts-published":
        creator, post_id = r.get("creator_id"), r.get("post_id")
        if not creator or not post_id:
            return []
        out, told = [], {creator}
        parent_id = r.get("parent_post_id")
        posts = ctx.side.get("published")
        parent = posts.get(parent_id, t) if parent_id and posts is not None else None
        if parent is not None and parent.creator_id not in told:
            out.append(_candidate(ctx, event, parent.creator_id, "REPLY", post_id=post_id, actor_id=creator))
            told.add(parent.creator_id)
        graph = ctx.side.get("graph")
        if graph is not None and r.get("distribution") != "RESTRICTED":
            for follower in graph.followers(creator, t)[:MAX_FANOUT]:
                if follower not in told:
                    out.append(_candidate(ctx, event, follower, "NEW_POST", post_id=post_id, actor_id=creator))
        return out
    if event.topic == "trends":
        aff = ctx.side.get("affinities")
        if r.get("state") != "STARTED" or aff is None or not r.get("subject"):
            return []
        sample = list(r.get("sample_post_ids") or [])
        return [_candidate(ctx, event, user, "TRENDING", post_id=sample[0] if sample else None,
                           subject=r["subject"])
                for user, _ in aff.interested(str(r.get("subject_kind")), r["subject"], t,
                                              TREND_MIN_AFFINITY, TREND_MAX_RECIPIENTS)]
    if event.topic == "golden-moments":
        creator, start = r.get("creator_id"), r.get("next_window_start")
        if not creator or start is None or str(r.get("content_type")) not in GOLDEN_CONTENT_TYPES:
            return []
        due = ms_of(start)
        if not t <= due <= t + GOLDEN_LEAD_MS:
            return []
        return [_candidate(ctx, event, creator, "GOLDEN_MOMENT", subject=str(r["content_type"]), due_at=due)]
    return []


# --- stage 2: decide per recipient -------------------------------------------------------------


def title_of(kind: str, actor: str | None, subject: str | None, n_items: int = 0) -> str:
    """The one line the view shows for a notification."""
    who = actor or "someone"
    return {"LIKE": f"{who} liked your post", "COMMENT": f"{who} commented on your post",
            "SHARE": f"{who} shared your post", "REPLY": f"{who} answered your post",
            "FOLLOW": f"{who} followed you", "NEW_POST": f"{who} posted",
            "TRENDING": f"{subject or 'a subject'} is trending",
            "GOLDEN_MOMENT": "your golden moment to post is near"}.get(kind, kind.lower())


def _new_state(day: int) -> dict:
    return {"arms": {}, "day": day, "sent": 0, "held": [], "digests": 0, "muted": [], "open": {}, "seen": [],
            "digest_sizes": [0, 0]}


def _copy(st: dict) -> dict:
    """A copy of a user's state that one event may change without touching the stored one: the
    containers an event changes in place (the arms' per-type dicts, ``held``, ``muted``,
    ``open``) are copied; what it only replaces (each arm, each ``open`` entry, ``seen``) is
    shared, never mutated (copy on write)."""
    return {**st, "arms": {k: dict(arms) for k, arms in st["arms"].items()},
            "held": list(st["held"]), "muted": list(st["muted"]), "open": dict(st["open"])}


def _arm(st: dict, kind: str, action: str) -> list[float]:
    return st["arms"].get(kind, {}).get(action) or list(B.PRIOR)


def _row(user: str, sent_at: int, nid: str, kind: str, status: str, ts_us: int, **cols: Any) -> Upsert:
    return Upsert(VIEW, {"user_id": user, "sent_at": sent_at, "notification_id": nid, "type": kind,
                         "status": status, **cols}, ts_us)


def _seen_key(event_id: str) -> str:
    """What ``seen`` keeps of a candidate's id: a 64-bit BLAKE2b digest in 16 hex digits, half
    the bytes of a UUID in every state write (ids of any shape; two of a user's last
    :data:`SEEN_KEEP` candidates collide with probability about 2e-15)."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


def _remember(st: dict, nid: str, entry: list) -> None:
    """Track notification ``nid`` for its feedback; forget, in the order they were made, those
    made more than :data:`OPEN_TTL_MS` before it, then the oldest (sent time, then id) beyond
    :data:`OPEN_KEEP`."""
    opened = st["open"]
    opened[nid] = entry
    expired = entry[2] - OPEN_TTL_MS
    stale = []
    for k, e in opened.items():
        if e[2] >= expired:
            break
        stale.append(k)
    for k in stale:
        del opened[k]
    while len(opened) > OPEN_KEEP:  # one at a time: the oldest (sent time, then id) goes
        del opened[min(opened, key=lambda k: (opened[k][2], k))]


def _notification(ctx: Context, event: Event, user: str, t: int, nid: str, kind: str, action: str,
                  probs: dict[str, float], expected: float | None, *, post_id=None, actor_id=None,
                  channel: str = "PUSH", digest=()) -> Emit:
    return Emit("notifications", {
        "event_id": nid, "event_time": t, "producer": NAME, "cause_event_id": event.event_id,
        "model": MODEL, "model_version": MODEL_VERSION, "notification_id": nid, "user_id": user,
        "type": kind, "channel": channel, "post_id": post_id, "actor_id": actor_id,
        "digest_event_ids": [h[5] for h in digest], "propensity": probs[action],
        "expected_reward": expected, "scheduled_for": None, "action": action,
        "action_probabilities": probs, "digest_notification_ids": [h[0] for h in digest]})


def _maybe_digest(st: dict, user: str, event: Event, ctx: Context, t: int, quiet: bool,
                  p: P.PolicyParams) -> list[Effect]:
    """The digest of the held items when one is due at ``t`` (and the items' rows DIGESTED)."""
    held = st["held"]
    if "DIGEST" in st["muted"] or not P.digest_due(held, t, quiet, p):
        return []
    st["digests"] += 1
    n, items = st.get("digest_sizes") or (0, 0)
    st["digest_sizes"] = [n + 1, items + len(held)]  # a new list: copy on write (_copy)
    nid = ctx.derive_id(f"digest#{st['digests']}", cause_event_id=f"user:{user}")
    probs = {"SEND": 1.0, "HOLD": 0.0, "DROP": 0.0}
    out: list[Effect] = [_notification(ctx, event, user, t, nid, "DIGEST", "SEND", probs, None, digest=held)]
    out.append(_row(user, t, nid, "DIGEST", "SENT", t * 1000, title=f"digest: {P.digest_title(held)}",
                    propensity=1.0, action="SEND", expected_reward=None, post_id=None, actor_id=None))
    for h in held:
        # one more write on the item's row: its write timestamp must exceed the HELD row's (and
        # any status write before) also within one millisecond, where Cassandra would otherwise
        # keep the greater *value* and a replay batched differently could read otherwise
        entry = st["open"].get(h[0])
        writes = 1 if entry is None else entry[5] + 1
        if entry is not None:
            st["open"][h[0]] = [*entry[:5], writes, entry[6]]  # copy on write (_copy)
        out.append(_row(user, int(h[4]), h[0], h[1], "DIGESTED", max(t, int(h[4])) * 1000 + min(writes, 999)))
    _remember(st, nid, ["DIGEST", "DIGEST", t, "", 0, 0, [h[0] for h in held]])
    st["held"] = []
    return out


def _quiet(ctx: Context, user: str, t: int, p: P.PolicyParams) -> bool:
    activity = ctx.side.get("activity")
    hist = activity.histogram(user, t) if activity is not None else None
    return P.hour_of_day(t) in P.quiet_hours(hist, p.quiet_share)


def _decide(st: dict, r: dict, event: Event, ctx: Context, t: int, quiet: bool, p: P.PolicyParams
            ) -> list[Effect]:
    user, kind = r["user_id"], str(r["type"])
    choices = P.feasible(quiet=quiet, sent_today=st["sent"], muted=kind in st["muted"],
                         digests_muted="DIGEST" in st["muted"], p=p)
    arms = {"SEND": _arm(st, kind, "SEND"), "HOLD": _arm(st, kind, "HOLD")}
    hold_cost = P.hold_cost(p, *(st.get("digest_sizes") or (0, 0)))
    d = B.decide(arms, choices, ctx.rng, send_cost=p.send_cost, hold_cost=hold_cost,
                 exploration=p.exploration)
    nid = ctx.derive_id("decision")
    expected = d.expected.get(d.action)
    post_id, actor_id = r.get("post_id"), r.get("actor_id")
    out: list[Effect] = [_notification(ctx, event, user, t, nid, kind, d.action, d.probabilities, expected,
                                       post_id=post_id, actor_id=actor_id,
                                       channel="PUSH" if d.action == "SEND" else "IN_APP")]
    if d.action == "DROP":
        return out
    status = "SENT" if d.action == "SEND" else "HELD"
    out.append(_row(user, t, nid, kind, status, t * 1000, title=title_of(kind, actor_id, r.get("subject")),
                    propensity=d.propensity, action=d.action, expected_reward=expected, post_id=post_id,
                    actor_id=actor_id))
    _remember(st, nid, [kind, d.action, t, "", 0, 0, []])
    if d.action == "SEND":
        st["sent"] += 1
    else:
        st["held"].append([nid, kind, post_id, actor_id, t, r["event_id"]])
    return out


def _feedback(st: dict, r: dict, t: int, p: P.PolicyParams) -> list[Effect]:
    user, nid, action = r["user_id"], r.get("notification_id"), str(r.get("action"))
    kind = str(r.get("notification_type"))
    if action == "MUTED" and kind not in st["muted"]:
        st["muted"].append(kind)
    entry = st["open"].get(nid)
    if entry is None or action not in STATUS_RANK:
        return []
    etype, ekind, sent_at, flags, rank, writes, items = entry
    if ekind == "DIGEST":
        # the digest's own reactions reach its items only as delivered / dismissed
        if action in ("DELIVERED", "DISMISSED"):
            for item in items:
                sub = st["open"].get(item)
                if sub is not None:
                    sub = st["open"][item] = list(sub)  # copy on write (_copy)
                    arm, sub[3] = B.update(_arm(st, sub[0], "HOLD"), sub[3], action, p.mute_penalty)
                    st["arms"].setdefault(sub[0], {})["HOLD"] = arm
    else:
        arm, flags = B.update(_arm(st, etype, ekind), flags, action, p.mute_penalty)
        st["arms"].setdefault(etype, {})[ekind] = arm
    new_rank = max(rank, STATUS_RANK[action])
    if new_rank == rank and flags == entry[3]:
        return []
    writes += 1
    st["open"][nid] = [etype, ekind, sent_at, flags, new_rank, writes, items]
    status = STATUS_OF_RANK[new_rank]
    return [_row(user, sent_at, nid, etype, status, max(t, sent_at) * 1000 + min(writes, 999))]


def process(state: State, event: Event, ctx: Context) -> list[Effect]:
    """One candidate (decide, maybe flush the digest first) or one feedback (update the arms,
    maybe flush the digest) for its user (module docstring); an erasure request forgets the
    user (their arms, budget, held items and open notifications)."""
    if event.topic == ERASURE_TOPIC:
        return forget_user(state, event, NAME, (TABLE,))
    r = event.record
    user = r.get("user_id")
    if not user or event.topic not in ("notification-candidates", "notification-feedback"):
        return []
    if event.topic == "notification-candidates" and str(r.get("type")) in ("DIGEST", "None"):
        return []
    t = event.event_time_ms
    p = params_of(ctx.config)
    old = state.get(TABLE, user)
    st = _new_state(t // P.DAY_MS) if old is None else _copy(old)
    if t // P.DAY_MS > st["day"]:
        st["day"], st["sent"] = t // P.DAY_MS, 0
    quiet = _quiet(ctx, user, t, p)
    out: list[Effect] = []
    if event.topic == "notification-candidates":
        seen = _seen_key(event.event_id)
        if seen in st["seen"] or event.event_id in st["seen"]:  # whole ids: states before v3
            return []
        st["seen"] = (st["seen"] + [seen])[-SEEN_KEEP:]
        out += _maybe_digest(st, user, event, ctx, t, quiet, p)
        out += _decide(st, r, event, ctx, t, quiet, p)
    else:
        out += _feedback(st, r, t, p)
        out += _maybe_digest(st, user, event, ctx, t, quiet, p)
    # a new candidate always changes the state (its id joins ``seen``): no comparison needed
    if old is not None and event.topic != "notification-candidates" and st == old:
        return out
    return [StateSet(TABLE, user, st), *out]


CANDIDATES_SPEC = AgentSpec(
    name=CANDIDATES_NAME,
    topics=("interactions", "follows", "posts-published", "trends", "golden-moments"),
    process=process_candidates,
    outputs=("notification-candidates",),
    side_inputs=(SideInput("published", "posts-published", open_published),
                 SideInput("graph", "follows", open_follow_graph),
                 SideInput("affinities", "profiles", open_subject_affinities)),
    doc="Re-keys likes, comments, answers, follows, new posts, trends and golden moments by recipient (stateless).",
    order_sensitive=True,
)

SPEC = AgentSpec(
    name=NAME,
    topics=("notification-candidates", "notification-feedback", ERASURE_TOPIC),
    process=process,
    outputs=("notifications",),
    tables=(TABLE,),
    side_inputs=(SideInput("activity", "profiles", open_audience_activity),),
    doc="Notifications: Thompson sampling per user and type (send, hold for a digest, drop), budget, quiet hours.",
    sinks=frozenset({"cassandra"}),
    order_sensitive=True,
    batch_size=200,
)
