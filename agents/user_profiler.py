"""User Profiler: each user's behavioural profile, from their interactions, follows, signup and
own posts; emitted on ``profiles`` (compacted), materialized into the ``profiles`` view and the
``user_interests`` vector collection.

Sources (keyed by the acting user, so one user's events meet in one partition): ``interactions``,
``follows``, ``signups``, and ``erasure-requests`` (the user's entry is forgotten,
:mod:`agents.shared.erasure`). Side inputs: ``posts-published`` (:class:`PublishedPosts`: what a post
is about, who made it, the user's own posts and answers), ``content-enriched``
(:class:`PostVectors`: each post's vector) and ``profiles`` (:class:`InterestPopulation`: what
users with the same declared interests engage with, for the cold start).

State (table ``profiles``, one JSON object per user)::

    {"signup": {"at": ms, "id": event_id, "declared": [interest, ...]} | null,
     "activity": [[at ms, event_id, kind | null, post_id], ...],   # newest HISTORY, sorted
     "follows": {creator_id: [at ms, event_id, "FOLLOW" | "UNFOLLOW"]},
     "n": events folded, "latest": [at ms, event_id]}

``process`` folds the event in (a re-delivered event id changes nothing) and recomputes the whole
profile *as of the latest event time folded* from that history (:mod:`models.profiles.interests`):
the result is a function of the set of events folded, not of the order they came in, and the
``profiles`` event is numbered by that set's size (``sequence``; its id is derived from the user
and the sequence). Views are written at ``latest * 1000 + min(sequence, 999)`` µs, so the last
profile computed is the one that stays.

Profile (ProfileUpdate v2): interest vector (decayed, weighted mean of engaged posts' vectors,
blended with the cold-start prior: ``alpha = n / (n + 5)``, see
:func:`models.profiles.interests.blend`), category / hashtag / creator affinities (both with the
half-life ``profile_half_life_days``), a decayed 7x24 active-hours histogram (its own
half-life, ``profile_activity_half_life_days``), daily activity (river ``EWMean``) and the
notification tolerance it implies. The cold-start prior is the unit mean of (a) the centroid of recent published posts in
the declared interests (hashtags or top category) and (b) the population centroid of those
interests (the mean interest vector of warm users who declared them, as of the previous UTC
midnight).
"""
from __future__ import annotations

import bisect
import threading
from typing import Any

import numpy as np

from agents.shared.erasure import ERASURE_TOPIC, forget_user
from agents.shared.posts import PostFacts, PostVectors, PublishedPosts, open_published, open_vectors, unit
from models.profiles import interests as I
from streams.contracts.agent import AgentSpec, Context, Event, SideInput, State, ms_of
from streams.contracts.effects import Effect, Emit, StateSet, Upsert, VectorUpsert

NAME = "user_profiler"
MODEL = "user_profiler.decayed_interests"
#: 3: the active-hours histogram decays with its own half-life
#: (``profile_activity_half_life_days``, default
#: :data:`models.profiles.interests.ACTIVITY_HALF_LIFE_DAYS`, 90), not the
#: interests' 14 days.
MODEL_VERSION = "3"
TABLE = "profiles"
COLLECTION = "user_interests"
#: Events kept per user (newest by time). The state is written to its changelog after every
#: event, so it stays small (about 15 kB at the cap); at the default half-life an event 8 weeks old
#: counts 1/16, and a user with 256 events in that time has a well-defined profile without it.
HISTORY = 256
#: The user's own published posts considered (newest by time).
OWN_POSTS = 64
#: Recent posts per declared interest that make its content centroid.
CENTROID_POSTS = 50
_POSITIVE = ("COMMENT", "SHARE", "LIKE", "LONG_VIEW", "ANSWER", "OWN_POST")


# --- the population side input -----------------------------------------------------------------


class InterestPopulation:
    """What users who declared an interest engage with, as of a day (side state over ``profiles``).

    For each declared interest, per UTC day, the sum of the interest vectors of *warm* profiles
    (not cold start) of users who declared it, and their count; :meth:`centroid` averages the
    days in ``[day(t) - days, day(t))``: complete days only, so it is a function of the log, not
    of which profiles of the current day a worker has read. Thread-safe.
    """

    def __init__(self, days: int = 30) -> None:
        self.days = days
        self._sums: dict[str, dict[int, list]] = {}   # interest -> day -> [sum (d,) f64, count]
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def apply(self, record: dict[str, Any]) -> None:
        """Fold one ``ProfileUpdate`` (v2) in; cold-start and vector-less profiles are skipped."""
        vec = record.get("interest_vector") or []
        declared = record.get("declared_interests") or []
        if record.get("cold_start") or not vec or not declared:
            return
        with self._lock:
            if record["event_id"] in self._seen:
                return
            self._seen.add(record["event_id"])
            day = ms_of(record["event_time"]) // I.DAY_MS
            v = np.asarray(vec, dtype=np.float64)
            for interest in declared:
                cell = self._sums.setdefault(interest, {}).get(day)
                if cell is None:
                    self._sums[interest][day] = [v.copy(), 1]
                elif cell[0].shape == v.shape:
                    cell[0] += v
                    cell[1] += 1

    def centroid(self, declared: list[str], t_ms: int) -> np.ndarray | None:
        """Unit mean of the warm profiles of users who declared any of ``declared``, over the
        complete UTC days before ``t_ms`` (at most ``days`` of them), or None."""
        today = t_ms // I.DAY_MS
        total, count = None, 0
        with self._lock:
            for interest in sorted(set(declared)):
                for day, (s, n) in sorted(self._sums.get(interest, {}).items()):
                    if today - self.days <= day < today:
                        total = s.copy() if total is None else total + s
                        count += n
        return None if not count else unit(total / count)


def _open_population(config: Any, models: Any) -> InterestPopulation:
    return InterestPopulation(days=int(getattr(config, "feed_horizon_days", 30) or 30))


# --- folding ----------------------------------------------------------------------------------


def _fold(st: dict[str, Any], event: Event) -> bool:
    """Merge ``event`` into the user's state ``st``; False when it was folded before."""
    r, at, eid = event.record, event.event_time_ms, event.event_id
    if event.topic == "signups":
        old = st.get("signup")
        if old is not None and (old["at"], old["id"]) <= (at, eid):
            return False
        st["signup"] = {"at": at, "id": eid, "declared": list(r.get("declared_interests") or [])}
    elif event.topic == "follows":
        creator = r["followee_id"]
        old = st["follows"].get(creator)
        if old is not None and (old[0], old[1]) >= (at, eid):
            return False
        st["follows"][creator] = [at, eid, r["action"]]
    elif event.topic == "interactions":
        item = [at, eid, I.engagement_kind(r["type"], r.get("dwell_ms")), r["post_id"]]
        acts = st["activity"]
        i = bisect.bisect_left(acts, item[:2])
        if i < len(acts) and acts[i][:2] == item[:2]:
            return False
        if len(acts) >= HISTORY and i == 0:
            return False  # older than the whole kept history
        acts.insert(i, item)
        del acts[:-HISTORY]
    else:
        return False
    st["n"] = st.get("n", 0) + 1
    st["latest"] = max(st.get("latest") or [0, ""], [at, eid])
    return True


def _engagements(st: dict[str, Any], user: str, t: int, posts: PublishedPosts | None
                 ) -> list[tuple[int, str, str, PostFacts | None, str]]:
    """``(at, kind, post_id, facts of the post engaged with, sort id)`` as of ``t``, in a fixed
    order (time, then id): interactions with a weight, and the user's own posts (OWN_POST) and
    answers (ANSWER on the parent)."""
    out = []
    for at, eid, kind, post_id in st["activity"]:
        if kind is not None and at <= t:
            out.append((at, kind, post_id, posts.get(post_id, t) if posts else None, eid))
    if posts is not None:
        for own in posts.by_creator(user, 0, t)[-OWN_POSTS:]:
            out.append((own.published_at, "OWN_POST", own.post_id, own, own.post_id))
            if own.parent_post_id:
                parent = posts.get(own.parent_post_id, t)
                out.append((own.published_at, "ANSWER", own.parent_post_id, parent, own.post_id + "^"))
    out.sort(key=lambda e: (e[0], e[4], e[1]))
    return out


def _prior(declared: list[str], t: int, posts: PublishedPosts | None, vectors: PostVectors | None,
           population: InterestPopulation | None, horizon_days: float) -> np.ndarray | None:
    """The cold-start prior: unit mean of the declared interests' content centroid and their
    population centroid (either alone when the other is unknown)."""
    if not declared:
        return None
    parts = []
    if posts is not None and vectors is not None:
        since = t - int(horizon_days * I.DAY_MS)
        ids = sorted({f.post_id for interest in declared
                      for f in posts.by_tag(interest, since, t)[-CENTROID_POSTS:]})
        _, m = vectors.matrix(ids, t)
        if len(m):
            parts.append(unit(m.astype(np.float64).mean(axis=0)))
    if population is not None:
        c = population.centroid(declared, t)
        if c is not None:
            parts.append(c)
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    return unit(np.sum([p.astype(np.float64) for p in parts], axis=0))


def profile_of(st: dict[str, Any], user: str, ctx: Context) -> dict[str, Any]:
    """The ProfileUpdate fields (without the envelope) for state ``st`` as of its latest event."""
    cfg = ctx.config
    half_life = float(getattr(cfg, "profile_half_life_days", 14.0))
    activity_half_life = float(getattr(cfg, "profile_activity_half_life_days", None)
                               or I.ACTIVITY_HALF_LIFE_DAYS)
    horizon = float(getattr(cfg, "feed_horizon_days", 30.0))
    t = st["latest"][0]
    posts: PublishedPosts | None = ctx.side.get("published")
    vectors: PostVectors | None = ctx.side.get("vectors")
    engaged = _engagements(st, user, t, posts)
    known = [e for e in engaged if e[3] is not None]
    with_vec = []
    for e in known:
        v = vectors.get(e[2], t) if vectors is not None else None
        if v is not None:
            with_vec.append((e, v))
    own = I.interest_vector([e[0] for e, _ in with_vec], [I.WEIGHTS[e[1]] for e, _ in with_vec],
                            np.stack([v for _, v in with_vec]) if with_vec else np.zeros((0, 1)),
                            t, half_life)
    declared = (st.get("signup") or {}).get("declared", [])
    population = ctx.side.get("population")
    n_pos = sum(1 for e, _ in with_vec if e[1] in _POSITIVE)
    prior = _prior(declared, t, posts, vectors, population, horizon)
    vector, alpha = I.blend(own, prior, float(len(with_vec)))
    ats = [e[0] for e in known]
    weights = [I.WEIGHTS[e[1]] for e in known]
    categories = I.affinities(ats, weights, [dict(e[3].categories) for e in known], t, half_life)
    hashtags = I.affinities(ats, weights, [dict.fromkeys(posts.topic_hashtags(e[3], t), 1.0) for e in known],
                            t, half_life)
    creators = I.affinities(ats, weights, [{e[3].creator_id: 1.0} if e[3].creator_id != user else {}
                                           for e in known], t, half_life)
    activity_times = sorted([a[0] for a in st["activity"] if a[0] <= t]
                            + [f[0] for f in st["follows"].values() if f[0] <= t]
                            + [e[0] for e in engaged if e[1] == "OWN_POST"])
    daily = I.daily_activity(activity_times)
    return {
        "interest_vector": [] if vector is None else [float(x) for x in vector],
        "category_affinities": categories,
        "hashtag_affinities": hashtags,
        "creator_affinities": creators,
        "active_hours": I.active_hours(activity_times, t, activity_half_life),
        "daily_activity": daily,
        "notification_tolerance": I.notification_tolerance(daily),
        "interaction_count": sum(1 for a in st["activity"] if a[0] <= t),
        "engagement_count": len(known),
        "own_signal_weight": alpha,
        "declared_interests": list(declared),
        "cold_start": n_pos < I.COLD_START_BELOW,
    }


def process(state: State, event: Event, ctx: Context) -> list[Effect]:
    """Fold one interaction, follow or signup into its user's profile and emit the profile as of
    the user's latest event (see the module docstring); an erasure request forgets the user."""
    if event.topic == ERASURE_TOPIC:
        return forget_user(state, event, NAME, (TABLE,))
    user = event.record["follower_id"] if event.topic == "follows" else event.record["user_id"]
    st = state.get(TABLE, user) or {"signup": None, "activity": [], "follows": {}, "n": 0, "latest": None}
    st = {**st, "activity": [list(a) for a in st["activity"]], "follows": dict(st["follows"])}
    if not _fold(st, event):
        return []
    p = profile_of(st, user, ctx)
    seq, (t, cause) = st["n"], st["latest"]
    ts = t * 1000 + min(seq, 999)
    record = {
        "event_id": ctx.derive_id(f"seq:{seq}", cause_event_id=f"{user}"),
        "event_time": t, "producer": NAME, "cause_event_id": cause,
        "model": MODEL, "model_version": MODEL_VERSION, "user_id": user, "sequence": seq, **p}
    effects: list[Effect] = [
        StateSet(TABLE, user, st),
        Emit("profiles", record),
        Upsert("profiles", {
            "user_id": user, "category_affinity": p["category_affinities"],
            "hashtag_affinity": p["hashtag_affinities"], "creator_affinity": p["creator_affinities"],
            "active_hours": p["active_hours"], "notification_tolerance": p["notification_tolerance"],
            "interactions": p["interaction_count"], "engagements": p["engagement_count"],
            "declared_interests": p["declared_interests"], "own_signal_weight": p["own_signal_weight"],
            "daily_activity": p["daily_activity"], "cold_start": p["cold_start"], "sequence": seq,
            "updated_at": t, "model_version": f"{MODEL}@{MODEL_VERSION}"}, ts),
    ]
    if p["interest_vector"]:
        effects.append(VectorUpsert(COLLECTION, user, p["interest_vector"], {
            "user_id": user, "updated_at": t, "cold_start": p["cold_start"]}))
    return effects


SPEC = AgentSpec(
    name=NAME,
    topics=("interactions", "follows", "signups", ERASURE_TOPIC),
    process=process,
    outputs=("profiles",),
    tables=(TABLE,),
    side_inputs=(SideInput("published", "posts-published", open_published),
                 SideInput("vectors", "content-enriched", open_vectors),
                 SideInput("population", "profiles", _open_population)),
    doc="Behavioural profiles: decayed interests, affinities, active hours, cold start.",
    order_sensitive=True,
    batch_size=200,
    sinks=frozenset({"cassandra", "vectors"}),
)
