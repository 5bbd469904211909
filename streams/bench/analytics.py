"""``pulse eval analytics``: does the first day's signals' predicted virality rank posts by their
final score, and how far is the HyperLogLog reach from the exact count?

The history (a Stack Exchange dump as Pulse events, loaded by the CLI) is replayed in time order
through the *live* agents, in process, with the runtime's own
:class:`~streams.runtime.engine.AgentRunner` and codecs (the ranking eval's
:class:`~streams.bench.ranking.Pipeline`; no Kafka, no Cassandra, one partition)::

    interactions, posts-published ─▶ analytics_signals ─▶ post-engagements ─▶ post_analytics
        ─▶ creator-engagements ─▶ creator_analytics

Uploads enter as ``posts-published`` records (every Stack Exchange post was published);
interactions as the loader makes them: comments, upvotes (LIKEs by one anonymous user),
favourites and acceptances (LIKEs); answers reach their question as REPLY signals. Downvotes
are not events (the loader has no negative reaction that fits), so the agent never sees them.

Ranking
    Each post's prediction is the one post_analytics made when the post's early horizon
    (``horizon_h``, 24 h: the first day) closed, from what the agent had seen by then. Truth: the
    post's ``Score`` in the dump (up minus down votes when the dump was taken). Baseline, in the
    same run: the first day's raw vote count, the post's up- and downvotes placed (by the
    loader's own rule, :func:`streams.demo.sources.stackexchange.early_votes_and_scores`)
    within 24 h of it; also reported: the first day's net votes (up minus down), which uses the downvotes the
    agent never sees. Spearman's rank correlation (``scipy.stats.spearmanr``, ties averaged) over
    the scored posts: those published after ``warmup_days`` (the model learns a post only when
    it matures, ``maturity_h`` after publication, so the first weeks' predictions are the
    cold-start ones) and at least ``maturity_h`` before the end of the dump. Also over all
    predicted posts.

Reach
    Exact: the distinct users other than the creator with any interaction or reply on a post
    (on any of a creator's posts), counted here from the same records. Estimate: the agent's
    sketch in its state. Relative error ``|estimate - exact| / exact``, mean and max, over the
    posts and creators with at least ``min_reach`` users. At a Stack Exchange site's own scale the
    sketch is in its exact coupon modes (every post has under a few hundred users), so the run
    also replays the interactions ``copies`` times, each copy's users renamed (``u`` ->
    ``u#k``) on the same posts, to measure the sketch at ``copies`` times the reach.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any, Callable, Sequence

from scipy.stats import spearmanr

from agents import creator_analytics as A
from models.analytics.reach import Reach, relative_error
from streams.bench.ranking import Pipeline
from streams.bench.timing import published_record
from streams.contracts.agent import derived_event_id, ms_of
from streams.settings import Settings

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
#: The issue's goal for the reach error (mean relative error).
GOAL_REACH_ERROR = 0.02


class EvalInputError(ValueError):
    """The history cannot be evaluated (no posts, or none left to score)."""


class AnalyticsConfig:
    """The settings with creator analytics' constants overridden (``analytics_horizon_h``,
    ``analytics_maturity_h``, ``analytics_lg_k``: read by the agents)."""

    def __init__(self, settings: Settings, **analytics: float | None) -> None:
        self._settings = settings
        self._analytics = {f"analytics_{k}": v for k, v in analytics.items() if v is not None}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("analytics_"):
            return self._analytics.get(name, getattr(self._settings, name, None))
        return getattr(self._settings, name)


def _inputs(event_type: str, r: dict, copy: int | None = None) -> list[tuple[str, dict]]:
    if event_type == "upload":
        return [] if copy else [("posts-published", published_record(r))]
    if event_type != "interaction":
        return []
    if copy:
        r = {**r, "user_id": f"{r['user_id']}#{copy}",
             "event_id": derived_event_id("eval.analytics", r["event_id"], f"copy{copy}")}
    return [("interactions", r)]


def replay(history: Sequence[tuple[str, dict]], settings: Settings, config: Any, copies: int = 1,
           progress: Callable[[int, int], None] | None = None) -> Pipeline:
    """Replay ``history`` (``(event_type, record)`` in time order) through the three agents,
    each interaction ``copies`` times (copy k > 0 by user ``u#k``)."""
    pipe = Pipeline(settings, [(A.SIGNALS_SPEC, None, config, None), (A.POSTS_SPEC, None, config, None),
                               (A.SPEC, None, config, None)])
    for i, (et, r) in enumerate(history):
        for k in range(copies):
            for topic, rec in _inputs(et, r, k):
                pipe.publish(topic, rec)
        if progress is not None and i % 500 == 0:
            progress(i, len(history))
    return pipe


def exact_reach(history: Sequence[tuple[str, dict]], copies: int = 1
                ) -> tuple[dict[str, set], dict[str, set]]:
    """Distinct users other than the creator per post and per creator (module docstring)."""
    creator_of = {r["post_id"]: r["creator_id"] for et, r in history if et == "upload"}
    posts: dict[str, set] = defaultdict(set)
    for et, r in history:
        if et == "interaction" and r["post_id"] in creator_of:
            pid, user = r["post_id"], r["user_id"]
        elif et == "upload" and r.get("parent_post_id") in creator_of:
            pid, user = r["parent_post_id"], r["creator_id"]
        else:
            continue
        n = copies if et == "interaction" else 1
        # a renamed copy of the creator (``c#1``) is another user, as the agents see it
        posts[pid].update(u for u in (user if k == 0 else f"{user}#{k}" for k in range(n))
                          if u != creator_of[pid])
    creators: dict[str, set] = defaultdict(set)
    for pid, users in posts.items():
        creators[creator_of[pid]] |= users
    return posts, creators


def _reach_errors(pipe: Pipeline, history, copies: int, min_reach: int, config: Any) -> dict[str, Any]:
    exact_posts, exact_creators = exact_reach(history, copies)
    tables = {s.spec.name: s.runner.tables for s in pipe.stages}
    out: dict[str, Any] = {"copies": copies}
    large_at = 2 ** (A.lg_k(config) - 3)   # about where HLL_4 leaves its exact coupon modes
    for what, exact, table in (("posts", exact_posts, tables[A.POSTS_NAME][A.POSTS]),
                               ("creators", exact_creators, tables[A.NAME][A.CREATORS])):
        errs, large = [], []
        for key, users in exact.items():
            if len(users) < min_reach:
                continue
            st = table.get(key) or {}
            est = Reach.from_state(st.get("reach"), A.lg_k(config)).estimate()
            errs.append(relative_error(est, len(users)))
            if len(users) >= large_at:
                large.append(errs[-1])
        sizes = sorted(len(u) for u in exact.values() if len(u) >= min_reach)
        out[what] = {"evaluated": len(errs), "median_exact_reach": sizes[len(sizes) // 2] if sizes else None,
                     "max_exact_reach": sizes[-1] if sizes else None,
                     "mean_relative_error": round(sum(errs) / len(errs), 5) if errs else None,
                     "max_relative_error": round(max(errs), 5) if errs else None,
                     f"reach_{large_at}_or_more": {
                         "evaluated": len(large),
                         "mean_relative_error": round(sum(large) / len(large), 5) if large else None,
                         "max_relative_error": round(max(large), 5) if large else None}}
    # the whole site: every creator's sketch merged (a union of HLLs) against every distinct user
    site = Reach(A.lg_k(config))
    for st in tables[A.NAME][A.CREATORS].values():
        site = site.merge(Reach.from_state(st.get("reach"), A.lg_k(config)))
    everyone = set().union(*exact_creators.values()) if exact_creators else set()
    out["site"] = {"exact_reach": len(everyone), "estimate": site.estimate(),
                   "relative_error": round(relative_error(site.estimate(), len(everyone)), 5)
                   if everyone else None}
    return out


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) < 3:
        return None
    rho = spearmanr(a, b).statistic
    return None if math.isnan(rho) else round(float(rho), 4)


def run_analytics_eval(history: Sequence[tuple[str, dict]], truth: tuple[dict, dict, dict],
                       settings: Settings, *, dataset: str = "", horizon_h: float = 24.0,
                       maturity_h: float = 168.0, lg_k: int | None = None, warmup_days: float = 45.0,
                       min_reach: int = 10, copies: int = 20,
                       progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """The evaluation of the module docstring; one JSON-ready dict. ``history``:
    ``(event_type, record)`` in time order; ``truth``:
    :func:`streams.demo.sources.stackexchange.early_votes_and_scores` at the same horizon.

    Raises :class:`EvalInputError` when no post can be scored."""
    started = time.perf_counter()
    score, raw, net = truth
    config = AnalyticsConfig(settings, horizon_h=horizon_h, maturity_h=maturity_h, lg_k=lg_k)
    uploads = [r for et, r in history if et == "upload"]
    if not uploads:
        raise EvalInputError("the history has no posts")
    pipe = replay(history, settings, config,
                  progress=(lambda i, n: progress("replay", i, n)) if progress else None)
    posts = next(s for s in pipe.stages if s.spec is A.POSTS_SPEC).runner.tables[A.POSTS]
    t0 = min(ms_of(u["event_time"]) for u in uploads)
    t_end = max(ms_of(r["event_time"]) for _, r in history)
    rows = []
    for u in uploads:
        st, pid = posts.get(u["post_id"]), u["post_id"]
        if st is None or st.get("predicted") is None or pid not in score:
            continue
        t = ms_of(u["event_time"])
        mature = t + maturity_h * HOUR_MS <= t_end
        rows.append({"post": pid, "pred": st["predicted"], "final": score[pid], "raw": raw.get(pid, 0),
                     "net": net.get(pid, 0), "mature": mature,
                     "scored": t >= t0 + warmup_days * DAY_MS and mature})
    scored = [r for r in rows if r["scored"]]
    if not scored:
        raise EvalInputError("no post is both past the warm-up and mature before the end of the dump")

    def rhos(sel: list[dict]) -> dict[str, Any]:
        final = [r["final"] for r in sel]
        return {"posts": len(sel), "predicted_virality": _spearman([r["pred"] for r in sel], final),
                "first_day_raw_votes": _spearman([r["raw"] for r in sel], final),
                "first_day_net_votes": _spearman([r["net"] for r in sel], final)}

    ranking = rhos(scored)
    model_state = next(s for s in pipe.stages if s.spec is A.POSTS_SPEC).runner.tables[A.PARTITIONS].get("m0")
    from models.analytics.virality import ViralityModel

    model = ViralityModel.from_state(model_state)
    reach_own = _reach_errors(pipe, history, 1, min_reach, config)
    reach_scaled = None
    if copies > 1:
        scaled = replay(history, settings, config, copies,
                        progress=(lambda i, n: progress(f"replay x{copies}", i, n)) if progress else None)
        reach_scaled = _reach_errors(scaled, history, copies, min_reach, config)
    reach_errors = [x[w]["mean_relative_error"] for x in (reach_own, reach_scaled) if x
                    for w in ("posts", "creators") if x[w]["mean_relative_error"] is not None]
    reach_errors += [x["site"]["relative_error"] for x in (reach_own, reach_scaled)
                     if x and x["site"]["relative_error"] is not None]
    rho, base = ranking["predicted_virality"], ranking["first_day_raw_votes"]
    return {
        "dataset": dataset,
        "posts": len(uploads),
        "predicted_posts": len(rows),
        "params": {"horizon_h": horizon_h, "maturity_h": maturity_h, "warmup_days": warmup_days,
                   "lg_k": A.lg_k(config), "min_reach": min_reach},
        "spearman_scored": ranking,
        "spearman_mature_with_warmup": rhos([r for r in rows if r["mature"]]),
        "spearman_all_predicted": rhos(rows),
        "model": {"learned_posts": model.learned, "weights": {k: round(v, 4) for k, v in model.weights().items()}},
        "reach": {"own_scale": reach_own, "scaled": reach_scaled},
        "goals": {
            "spearman": rho, "baseline_first_day_raw_votes": base,
            "met_spearman_above_baseline": rho is not None and base is not None and rho > base,
            "above_first_day_net_votes": rho is not None and ranking["first_day_net_votes"] is not None
            and rho > ranking["first_day_net_votes"],
            "reach_mean_relative_error_max": max(reach_errors) if reach_errors else None,
            "met_reach_error_under_2pct": bool(reach_errors) and max(reach_errors) < GOAL_REACH_ERROR,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
