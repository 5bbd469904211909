"""``pulse eval trends``: burst detection on a real tag stream with bursts injected at known times
and sizes, against a fixed-threshold count detector in the same run.

Background
    The questions of a Stack Exchange dump (their tags are the hashtags), as ``posts-published``
    records, in time order. The first ``warmup_days`` are replayed but not scored.

Runs (each replays the whole history through the agents' own ``process`` functions, in
process: ``trend_mentions`` then ``trend_detector``, one partition, dict state)
    * clean: the real stream alone. Every trend that STARTS after the warm-up is a *false alarm*
      (the real background has no known bursts; real ones, if any, count against us), reported
      per day over all tags, and per tag-day.
    * injected, ``trials`` per burst size ``m``: for every *eligible* tag (own rate, mentions per
      day over the evaluated period, at least ``min_rate``) a burst starts at a uniformly drawn
      time after the warm-up (seeded), lasting ``burst_windows`` windows, adding a Poisson
      process of rate ``(m - 1) * rate`` of extra posts carrying that tag (so the tag runs at
      ``m`` times its own rate). All eligible tags are injected in one run: their counts are
      independent (one subject's state never reads another's).

    A burst is *detected* when its tag's trend STARTS within ``[start, end]``; the delay is the
    STARTED event time minus ``start``. A burst whose tag already trends at ``start`` is left
    out of recall (counted in ``already_trending``).

Baseline: the same windows, a fixed count threshold ``T`` for every tag (a trend starts when a
tag's window count reaches ``T``). ``T`` is the smallest threshold with fewer than
``max_false_alarms_per_day`` false alarms per day on the clean run, i.e. tuned on the evaluated
background itself (this favours the baseline: the detector's constants are not tuned on it).
"""
from __future__ import annotations

import random
import statistics
import time
from collections import defaultdict
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Sequence

from agents import trend_detector as T
from models.trends import burst as B
from streams.contracts.agent import Context, Event, derived_event_id

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
#: The issue's goals.
GOAL_RECALL_3X = 0.9
GOAL_FALSE_ALARMS_PER_DAY = 1.0


class EvalInputError(ValueError):
    """The history cannot be evaluated (no tagged posts, or too short for the warm-up)."""


class _DictState:
    def __init__(self, tables: Iterable[str]):
        self.tables: dict[str, dict] = {t: {} for t in tables}

    def get(self, table: str, key: str, default: Any = None) -> Any:
        v = self.tables[table].get(key)
        return default if v is None else v


def published_records(uploads: Sequence[dict]) -> list[dict]:
    """``posts-published``-shaped records (the fields the agents read) of the tagged uploads."""
    out = []
    for u in uploads:
        if not u.get("hashtags"):
            continue
        out.append({"event_id": derived_event_id("eval.trends", u["event_id"], "published"),
                    "event_time": u["event_time"], "post_id": u["post_id"],
                    "creator_id": u["creator_id"], "hashtags": list(u["hashtags"]),
                    "categories": {}, "distribution": "FULL"})
    return out


def run_detector(posts: Sequence[dict], config: Any) -> list[dict]:
    """Replay ``posts`` (time order) through ``trend_mentions`` and ``trend_detector``; the
    ``trends`` records emitted, in order."""
    state = _DictState(T.SPEC.tables)
    trends = []
    for post in posts:
        ev = Event("posts-published", post, 0, None)
        mentions = T.process_mentions(None, ev, Context(T.MENTIONS_NAME, post["event_id"],
                                                        post["event_time"], config=config))
        for m in mentions:
            rec = m.record
            for eff in T.process(state, Event("trend-mentions", rec, 0, None),
                                 Context(T.NAME, rec["event_id"], rec["event_time"], config=config)):
                kind = type(eff).__name__
                if kind == "StateSet":
                    state.tables[eff.table][eff.key] = eff.value
                elif kind == "Emit":
                    trends.append(eff.record)
    return trends


def run_threshold(posts: Sequence[dict], p: B.TrendParams, threshold: int) -> list[dict]:
    """The baseline over the same sliding windows: a tag's trend STARTS when its window count
    reaches ``threshold`` and ENDS when, at its next mention, the count had fallen below it.
    Records shaped like ``trends`` events (``subject``, ``subject_kind``, ``state``,
    ``event_time``)."""
    slots: dict[str, dict[int, int]] = defaultdict(dict)
    on: dict[str, bool] = {}
    out = []
    clock = 0
    for post in posts:
        clock = max(clock, post["event_time"])
        hi = clock // p.slot_ms
        lo = hi - p.window_slots + 1
        for tag in sorted({t.lower() for t in post["hashtags"]}):
            s = slots[tag]
            for old in [k for k in s if k < lo]:
                del s[old]
            before = sum(s.values())
            if on.get(tag) and before < threshold:
                on[tag] = False
                out.append({"subject": tag, "subject_kind": "HASHTAG", "state": "ENDED", "event_time": clock})
            k = post["event_time"] // p.slot_ms
            if k >= lo:
                s[k] = s.get(k, 0) + 1
            if not on.get(tag) and sum(s.values()) >= threshold:
                on[tag] = True
                out.append({"subject": tag, "subject_kind": "HASHTAG", "state": "STARTED", "event_time": clock})
    return out


def inject(posts: Sequence[dict], bursts: Sequence[dict], rng: random.Random) -> list[dict]:
    """``posts`` plus, for each burst ``{"tag", "start", "end", "extra_rate"}`` (extra posts per
    ms), a Poisson process of posts carrying only that tag; merged in time order."""
    extra = []
    for b in bursts:
        t = b["start"]
        while True:
            t += rng.expovariate(b["extra_rate"])
            if t >= b["end"]:
                break
            i = len(extra)
            extra.append({"event_id": derived_event_id("eval.trends", f"inject:{b['tag']}:{i}:{b['start']}"),
                          "event_time": int(t), "post_id": f"inject-{i}", "creator_id": "inject",
                          "hashtags": [b["tag"]], "categories": {}, "distribution": "FULL"})
    return sorted([*posts, *extra], key=lambda r: (r["event_time"], r["event_id"]))


def _config(p: B.TrendParams) -> SimpleNamespace:
    return SimpleNamespace(trend_slot_s=p.slot_ms / 1000, trend_window_slots=p.window_slots,
                           trend_half_life_h=p.half_life_ms / HOUR_MS, trend_bias=p.bias,
                           trend_z_start=p.z_start, trend_z_end=p.z_end, trend_min_count=p.min_count)


def _starts(trends: Sequence[dict]) -> list[tuple[str, int]]:
    return [(t["subject"], _ms(t["event_time"])) for t in trends
            if t["state"] == "STARTED" and t["subject_kind"] == "HASHTAG"]


def _ms(t: Any) -> int:
    return t if isinstance(t, int) else int(round(t.timestamp() * 1000))


def _on_at(trends: Sequence[dict], tag: str, at: int) -> bool:
    on = False
    for t in trends:
        if t["subject"] == tag and _ms(t["event_time"]) <= at:
            on = t["state"] != "ENDED"
    return on


def _outcomes(starts: Sequence[tuple[str, int]], bursts: Sequence[dict],
              trends: Sequence[dict] | None = None) -> tuple[list[int], int, int]:
    """``(delays ms of the detected bursts, missed, already trending at their start)``."""
    by_tag = defaultdict(list)
    for tag, at in starts:
        by_tag[tag].append(at)
    delays, missed, already = [], 0, 0
    for b in bursts:
        if trends is not None and _on_at(trends, b["tag"], b["start"]):
            already += 1
            continue
        hit = [at for at in by_tag[b["tag"]] if b["start"] <= at <= b["end"]]
        if hit:
            delays.append(min(hit) - b["start"])
        else:
            missed += 1
    return delays, missed, already


def _summary(runs: Sequence[tuple[list[int], int, int]], p: B.TrendParams) -> dict[str, Any]:
    """Recall and delays pooled over the trials' bursts."""
    delays = sorted(d for r in runs for d in r[0])
    missed, already = sum(r[1] for r in runs), sum(r[2] for r in runs)
    n = len(delays) + missed
    med = statistics.median(delays) if delays else None
    return {"bursts": n, "detected": len(delays), "recall": round(len(delays) / n, 3) if n else None,
            "already_trending": already,
            "recall_all": round(len(delays) / (n + already), 3) if n + already else None,
            "median_delay_h": round(med / HOUR_MS, 1) if delays else None,
            "median_delay_windows": round(med / p.window_ms, 3) if delays else None,
            "p90_delay_h": round(delays[max(0, -(-9 * len(delays) // 10) - 1)] / HOUR_MS, 1) if delays else None}


def run_trends_eval(uploads: Sequence[dict], *, dataset: str = "", params: B.TrendParams,
                    warmup_days: float = 28.0, sizes: Sequence[float] = (2.0, 3.0, 5.0),
                    trials: int = 10, burst_windows: float = 1.0, min_rate: float = 0.4,
                    max_false_alarms_per_day: float = GOAL_FALSE_ALARMS_PER_DAY, seed: int = 14,
                    progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Run the evaluation described in the module docstring; one JSON-ready dict.

    ``uploads``: upload records (``event_time`` UTC epoch ms, ``hashtags``), any order;
    ``params``: the detector's constants; ``sizes``: burst sizes as multiples of the tag's own
    rate; ``min_rate``: mentions per day a tag needs to be injected.
    """
    started = time.perf_counter()
    posts = sorted(published_records(uploads), key=lambda r: (r["event_time"], r["event_id"]))
    if not posts:
        raise EvalInputError("no tagged posts in the dump")
    config = _config(params)
    t0, t1 = posts[0]["event_time"], posts[-1]["event_time"]
    eval_from = t0 + int(warmup_days * DAY_MS)
    duration = int(burst_windows * params.window_ms)
    if eval_from + duration >= t1:
        raise EvalInputError(f"the history ({(t1 - t0) / DAY_MS:.0f} days) is too short for a "
                         f"{warmup_days}-day warm-up and {burst_windows} window bursts")
    days = (t1 - eval_from) / DAY_MS
    counts: dict[str, int] = defaultdict(int)
    for post in posts:
        if post["event_time"] >= eval_from:
            for tag in {t.lower() for t in post["hashtags"]}:
                counts[tag] += 1
    rates = {tag: n / days for tag, n in counts.items()}
    eligible = sorted(tag for tag, r in rates.items() if r >= min_rate)
    total_runs = 1 + len(sizes) * trials
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total_runs, what)

    clean = run_detector(posts, config)
    step("clean run")
    clean_starts = [s for s in _starts(clean) if s[1] >= eval_from]
    threshold = 1
    while True:
        fa = [s for s in _starts(run_threshold(posts, params, threshold)) if s[1] >= eval_from]
        if len(fa) / days < max_false_alarms_per_day:
            break
        threshold += 1
    tag_days = days * max(len(rates), 1)

    rng = random.Random(seed)
    per_size = {}
    for m in sizes:
        det_runs, base_runs = [], []
        for trial in range(trials):
            bursts = []
            for tag in eligible:
                start = rng.randrange(eval_from, t1 - duration)
                bursts.append({"tag": tag, "start": start, "end": start + duration,
                               "extra_rate": (m - 1.0) * rates[tag] / DAY_MS})
            stream = inject(posts, bursts, random.Random(rng.random()))
            trends = run_detector(stream, config)
            det_runs.append(_outcomes(_starts(trends), bursts, trends))
            base = run_threshold(stream, params, threshold)
            base_runs.append(_outcomes(_starts(base), bursts, base))
            step(f"{m:g}x trial {trial + 1}")
        per_size[f"{m:g}x"] = {"trend_detector": _summary(det_runs, params),
                               "fixed_threshold": _summary(base_runs, params)}

    det3 = per_size.get("3x", {}).get("trend_detector", {})
    fa_day = len(clean_starts) / days
    return {
        "dataset": dataset,
        "tagged_posts": len(posts),
        "evaluated_days": round(days, 1),
        "warmup_days": warmup_days,
        "tags": len(rates),
        "eligible_tags": {tag: round(rates[tag], 2) for tag in eligible},
        "min_rate_per_day": min_rate,
        "params": {"slot_h": params.slot_ms / HOUR_MS, "window_slots": params.window_slots,
                   "window_days": params.window_ms / DAY_MS, "half_life_days": params.half_life_ms / DAY_MS,
                   "bias": params.bias, "z_start": params.z_start, "z_end": params.z_end,
                   "min_count": params.min_count, "warmup_windows": params.warmup_windows},
        "burst_windows": burst_windows,
        "trials": trials,
        "seed": seed,
        "false_alarms": {
            "trend_detector": {"count": len(clean_starts), "per_day": round(fa_day, 3),
                               "per_tag_day": round(len(clean_starts) / tag_days, 5)},
            "fixed_threshold": {"threshold": threshold, "count": len(fa),
                                "per_day": round(len(fa) / days, 3),
                                "per_tag_day": round(len(fa) / tag_days, 5)},
        },
        "bursts": per_size,
        "goals": {
            "recall_3x": det3.get("recall"), "met_recall_3x": (det3.get("recall") or 0) >= GOAL_RECALL_3X,
            "median_delay_windows_3x": det3.get("median_delay_windows"),
            "met_delay": det3.get("median_delay_windows") is not None and det3["median_delay_windows"] < 1.0,
            "false_alarms_per_day": round(fa_day, 3), "met_false_alarms": fa_day < GOAL_FALSE_ALARMS_PER_DAY,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
