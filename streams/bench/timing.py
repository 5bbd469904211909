"""``pulse eval timing``: do the golden moments predict when a creator's audience is active?

The history (a Stack Exchange dump as Pulse events, loaded by the CLI) before a time split is
replayed in time order through the *live* agents, in process, with the runtime's own
:class:`~streams.runtime.engine.AgentRunner` and codecs (the ranking eval's
:class:`~streams.bench.ranking.Pipeline`; no Kafka, no Cassandra)::

    follows, interactions ─▶ user_profiler ─▶ profiles ─▶ (side input) ─┐
    follows, interactions, posts-published ─▶ timing_audience ─▶ timing-audience ─▶ timing_optimizer

Uploads enter as ``posts-published`` records directly (the publisher's gates decide nothing
here: every Stack Exchange post was published). Votes are left out entirely: the dump dates
them to the day and the loader places them at a hashed instant of it, so their hour of the
day is made up (the profiler would learn it, and it would be scored as activity). What remains
carries real times: questions, answers, comments, and the follows the loader derives from
answers and comments.

At the split ``t`` every creator the optimizer holds state for is evaluated with
:func:`agents.timing_optimizer.golden_moment` (the function ``process`` calls) as of ``t``:
its predicted top-3 hours of the week (HOURLY: the posterior map itself) and, per content type,
its top-3 posting windows. The creator's audience is the agent's own (:func:`audience_at`:
followers, i.e. people who answered or commented on the creator's posts, and engagers of the
last 90 days; answers and comments are both). Truth: every activity of those members after the
split (their questions, answers and comments, anywhere on the site), counted per hour of the
week. A creator is scored when the audience has a profile and some activity after the split.

* HOURLY share: the share of the audience's post-split activity that falls in the predicted
  top-3 one-hour windows of the week.
* Per content type: the same with each window's kernel (:mod:`models.timing.windows`): the
  kernel-weighted share of the activity the post would meet, summed over the top-3 windows.
* Baseline, in the same run: the global top-3 hours, the three hours of the week with the most
  activity (the same kinds of events) before the split, for every creator; per content type
  the top-3 windows of that global map with the same kernel. Also reported: the population
  prior alone (the agent's map with no audience).

Means are over creators (each creator counts once); ``pooled`` sums the activity of all
creators' audiences first. Small audiences: under 10 members with a profile. ``truth_until``
(a fraction of the span, after the split) ends the truth there: a development run on an
earlier split that never reads the reported period (the constants were chosen on ``--split 0.3,
0.4, 0.5 --truth-until 0.6``; docs/timing.md). The reported run leaves it unset: the truth is
everything after the split. The prior strength
fitted on the history before the split (:func:`models.timing.shrinkage.fit_prior_strength`) is
reported; the run uses the configured one (default :data:`models.timing.shrinkage.PRIOR_STRENGTH`).
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any, Callable, Sequence

import numpy as np

from agents import timing_optimizer as T
from agents import user_profiler
from agents.shared.activity import AudienceActivity
from models.timing import shrinkage as S
from models.timing import windows as W
from streams.bench.ranking import Pipeline
from streams.contracts.agent import derived_event_id, ms_of
from streams.settings import Settings

#: The issue's goals: 25 % above the baseline overall, no worse for small audiences.
GOAL_RATIO = 1.25
SMALL_AUDIENCE = 10
TOP = 3


class EvalInputError(ValueError):
    """The history cannot be evaluated (nothing before or after the split)."""


def published_record(upload: dict) -> dict:
    """The ``posts-published`` record of a Stack Exchange upload (published as uploaded)."""
    return {"event_id": derived_event_id("eval.timing", upload["event_id"], "published"),
            "event_time": upload["event_time"], "producer": "eval.timing",
            "cause_event_id": upload["event_id"], "post_id": upload["post_id"],
            "creator_id": upload["creator_id"], "kind": upload.get("kind") or "TEXT",
            "content_type": upload.get("content_type") or "FOREVER", "distribution": "FULL",
            "uploaded_at": upload["event_time"], "expires_at": None,
            "hashtags": list(upload.get("hashtags") or []), "categories": {}, "quality_score": None,
            "parent_post_id": upload.get("parent_post_id")}


def activity_of(event_type: str, r: dict) -> tuple[str, int] | None:
    """``(user_id, time ms)`` of an activity with a real time (a post or a comment), else None."""
    if event_type == "upload":
        return r["creator_id"], ms_of(r["event_time"])
    if event_type == "interaction" and r.get("type") == "COMMENT":
        return r["user_id"], ms_of(r["event_time"])
    return None


def _inputs(event_type: str, r: dict) -> list[tuple[str, dict]]:
    if event_type == "upload":
        return [("posts-published", published_record(r))]
    if event_type == "interaction" and r.get("type") == "COMMENT":
        return [("interactions", r)]
    if event_type == "follow":
        return [("follows", r)]
    return []


def realized(actual: np.ndarray, windows: Sequence[int], content_type: str) -> float:
    """Share of ``actual`` (168 counts) a post in each of ``windows`` would meet, weighted by
    the content type's kernel, summed over the windows (HOURLY: the plain share)."""
    total = actual.sum()
    if total <= 0:
        return 0.0
    scores = W.window_scores(actual / total, content_type)
    return float(sum(scores[w] for w in windows))


def _summary(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


class TimingConfig:
    """The settings, with the timing_optimizer's constants overridden where given (``prior_strength``,
    ``smoothing``, ``hour_bandwidth``, ``audience_days``: read by the agent as ``timing_*``
    attributes)."""

    def __init__(self, settings: Settings, **timing: float | None) -> None:
        self._settings = settings
        self._timing = {f"timing_{k}": v for k, v in timing.items() if v is not None}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("timing_"):
            return self._timing.get(name, getattr(self._settings, name, None))
        return getattr(self._settings, name)


def run_timing_eval(history: Sequence[tuple[str, dict]], settings: Settings, *, split: float = 0.6,
                    dataset: str = "", prior_strength: float | None = None,
                    smoothing: float | None = None, hour_bandwidth: int | None = None,
                    truth_until: float | None = None,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Replay the history before the split and score the golden moments after it (module
    docstring). ``history``: ``(event_type, record)`` in time order (``upload``,
    ``interaction``, ``follow``, ``user_signup``); ``split``: where the split falls, as a
    fraction of the history's time span; ``truth_until``: where the truth ends, a fraction
    greater than ``split`` (None: the end of the history); ``prior_strength`` / ``smoothing`` /
    ``hour_bandwidth``: the agent's constants for this run (None: its defaults); the profiler
    and the side input run with
    ``settings`` (``profile_activity_half_life_days`` sets the active-hours decay). Returns the
    JSON-ready report.

    Raises :class:`EvalInputError` when the split leaves no activity on one side, or
    ``truth_until`` is not after the split."""
    started = time.perf_counter()
    times = [ms_of(r["event_time"]) for _, r in history]
    if not times:
        raise EvalInputError("the history is empty")
    t_split = times[0] + int(split * (times[-1] - times[0]))
    if truth_until is not None and truth_until <= split:
        raise EvalInputError(f"the truth must end after the split ({truth_until} <= {split})")
    t_end = (times[-1] + 1 if truth_until is None or truth_until >= 1
             else times[0] + int(truth_until * (times[-1] - times[0])))
    before = [(et, r) for (et, r), t in zip(history, times) if t < t_split]
    after = [(et, r) for (et, r), t in zip(history, times) if t_split <= t < t_end]
    config = TimingConfig(settings, prior_strength=prior_strength, smoothing=smoothing,
                          hour_bandwidth=hour_bandwidth)
    pipe = Pipeline(settings, [(user_profiler.SPEC, None, None, None),
                               (T.AUDIENCE_SPEC, None, None, None), (T.SPEC, None, config, None)])
    global_counts = np.zeros(S.HOURS)
    for i, (et, r) in enumerate(before):
        for topic, rec in _inputs(et, r):
            pipe.publish(topic, rec)
        act = activity_of(et, r)
        if act is not None:
            global_counts[S.hour_of_week(act[1])] += 1
        if progress is not None:
            progress(i + 1, len(before))
    future: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(S.HOURS))
    for et, r in after:
        act = activity_of(et, r)
        if act is not None:
            future[act[0]][S.hour_of_week(act[1])] += 1
    if not global_counts.sum() or not future:
        raise EvalInputError(f"the split at {split} leaves no activity before or after it")

    activity: AudienceActivity = pipe.side_state(AudienceActivity)
    states = next(s for s in pipe.stages if s.spec is T.SPEC).runner.tables[T.TABLE]
    population = activity.population(t_split)
    kinds = (W.HOURLY, *W.CONTENT_TYPES)
    baseline = {ct: [w for w, _ in W.top_windows(W.window_scores(global_counts / global_counts.sum(), ct), TOP)]
                for ct in kinds}
    # the agent's map with no audience: the population, smoothed over hours like every map
    prior_map = S.posterior([], population, 0.0, bandwidth=T.hour_bandwidth(config)).hour_map
    prior_only = [w for w, _ in W.top_windows(prior_map, TOP)]
    rows = []
    fit_counts = []
    for creator in sorted(states):
        st = states[creator]
        post, tops = T.golden_moment(st, t_split, activity, config)
        members = [u for u in T.audience_at(st, t_split, T.audience_days(config))
                   if activity.histogram(u, t_split) is not None]
        alpha = T.prior_strength(config)
        if post.audience_size and 0 < post.prior_weight < 1:  # soft counts x = m (n + a) - a pi
            n_eff = alpha * (1 - post.prior_weight) / post.prior_weight   # (both hour-smoothed)
            fit_counts.append(post.hour_map * (n_eff + alpha) - alpha * prior_map)
        actual = sum((future[u] for u in members if u in future), np.zeros(S.HOURS))
        if not post.audience_size or not actual.sum():
            continue
        rows.append({"creator": creator, "size": post.audience_size, "actual": actual,
                     "model": {ct: realized(actual, [w for w, _ in tops[ct]], ct) for ct in kinds},
                     "baseline": {ct: realized(actual, baseline[ct], ct) for ct in kinds},
                     "prior_only": realized(actual, prior_only, W.HOURLY)})

    def group(sel) -> dict[str, Any]:
        g = [r for r in rows if sel(r)]
        out: dict[str, Any] = {"creators": len(g)}
        if not g:
            return out
        pooled = sum((r["actual"] for r in g), np.zeros(S.HOURS))
        for ct in kinds:
            m, b = _summary([r["model"][ct] for r in g]), _summary([r["baseline"][ct] for r in g])
            out[ct.lower()] = {"golden_moment": m, "global_top3": b, "ratio": _ratio(m, b)}
        h = out["hourly"]
        h["population_prior_top3"] = _summary([r["prior_only"] for r in g])
        h["wins"] = sum(r["model"][W.HOURLY] > r["baseline"][W.HOURLY] for r in g)
        h["losses"] = sum(r["model"][W.HOURLY] < r["baseline"][W.HOURLY] for r in g)
        # pooled: each creator's predicted windows applied to their own audience, activity summed
        hit_m = sum(r["model"][W.HOURLY] * r["actual"].sum() for r in g)
        hit_b = sum(r["baseline"][W.HOURLY] * r["actual"].sum() for r in g)
        h["pooled"] = {"golden_moment": round(hit_m / pooled.sum(), 4),
                       "global_top3": round(hit_b / pooled.sum(), 4), "activities": int(pooled.sum())}
        out["median_audience"] = float(np.median([r["size"] for r in g]))
        return out

    overall = group(lambda r: True)
    small = group(lambda r: r["size"] < SMALL_AUDIENCE)
    large = group(lambda r: r["size"] >= SMALL_AUDIENCE)
    try:
        fitted = round(S.fit_prior_strength(np.array(fit_counts), prior_map), 3) if fit_counts else None
    except ValueError:
        fitted = None
    r_all = overall.get("hourly", {}).get("ratio")
    m_small, b_small = (small.get("hourly", {}).get(k) for k in ("golden_moment", "global_top3"))
    return {
        "dataset": dataset,
        "split": {"fraction": split, "at_ms": t_split, "events_before": len(before), "events_after": len(after),
                  "truth_until": truth_until},
        "prior_strength": T.prior_strength(config),
        "fitted_prior_strength": fitted,
        "smoothing": T.smoothing(config),
        "hour_bandwidth": T.hour_bandwidth(config),
        "audience_days": T.audience_days(config),
        "profile_half_life_days": float(getattr(settings, "profile_half_life_days", 14.0)),
        "profile_activity_half_life_days": float(getattr(settings, "profile_activity_half_life_days", 90.0)),
        "creators_with_state": len(states),
        "global_top3_hours": [list(W.day_hour(w)) for w in baseline[W.HOURLY]],
        "overall": overall, "small_audiences": small, "large_audiences": large,
        "goals": {"ratio_overall": r_all, "met_overall": r_all is not None and r_all >= GOAL_RATIO,
                  "small_golden_moment": m_small, "small_global_top3": b_small,
                  "met_small": m_small is not None and b_small is not None and m_small >= b_small},
        "agent_events": {s.spec.name: s.events for s in pipe.stages},
        "dead_letters": sum(s.dead_letters for s in pipe.stages),
        "seconds": round(time.perf_counter() - started, 1),
    }
