"""Delivery in `pulse demo`: what the delivery agents materialized, read from Cassandra after the
run through the query layer: a few users' notification decisions with the probability the
policy gave each action, a few creators' golden moments and stats (reach, engagement, predicted
virality of their posts), and the current trends.

Who is shown: the recipients of the most notification decisions (ties by id) and the creators with the most
followers in the demo's events (ties by id), so the tables show the busiest rows rather than
arbitrary ones. "Current" trends are those open at the end of the demo's history (the agents run
on event time; a trend ends when later mentions show the burst is over)."""
from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from streams.settings import Settings

#: How many users' notifications, creators' golden moments, rows per user and trends are shown.
USERS, CREATORS, NOTIFICATIONS, TRENDS, POSTS = 2, 2, 5, 8, 3
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def pick_creators(events: list[tuple[str, dict]], n: int = CREATORS) -> list[str]:
    """The ``n`` creators with the most followers in the demo's ``(topic, record)`` events (only
    creators who posted), ties by id."""
    posted = {r["creator_id"] for t, r in events if t == "uploads"}
    followers = Counter(r["followee_id"] for t, r in events if t == "follows"
                        and r.get("action", "FOLLOW") == "FOLLOW" and r["followee_id"] in posted)
    return [c for c, _ in sorted(followers.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def notification_counts(settings: Settings) -> tuple[Counter, Counter]:
    """``(decisions per user, decisions per action)`` in the notifications view (one scan)."""
    from streams.query.read_side import read_side_of

    rs = read_side_of(settings)
    by_user: Counter = Counter()
    by_action: Counter = Counter()
    for row in rs.execute("SELECT user_id, action FROM {ks}.notifications", (), keyspace=rs.active_keyspace()):
        by_user[row.user_id] += 1
        by_action[(row.action or "SEND").lower()] += 1
    return by_user, by_action


def delivery_summary(settings: Settings, events: list[tuple[str, dict]]) -> dict[str, Any]:
    """``{"notifications": {"rows", "by_action", "users": [{"user_id", "decisions": [...]}]},
    "golden_moments": [{"creator_id", "moments": [...]}], "trends": [...]}`` (empty parts when
    an agent wrote nothing)."""
    from streams.query.analytics import UnknownCreator as UnknownStatsCreator, read_creator_stats
    from streams.query.notifications import read_notifications
    from streams.query.timing import UnknownCreator, read_golden_moments
    from streams.query.trends import read_trends

    by_user, by_action = notification_counts(settings)
    users = []
    for u, _ in sorted(by_user.items(), key=lambda kv: (-kv[1], kv[0]))[:USERS]:
        users.append({"user_id": u, "decisions": [r.as_dict() for r in
                                                  read_notifications(settings, u, limit=NOTIFICATIONS)]})
    moments, stats = [], []
    for c in pick_creators(events):
        try:
            moments.append({"creator_id": c, "moments": [r.as_dict() for r in read_golden_moments(settings, c)]})
        except UnknownCreator:
            pass
        try:
            # by reach: the demo publishes its history in phases (every post, then the people,
            # then the engagement), so each post's first-day horizon passes on post_analytics'
            # event-time clock before its first interaction arrives, and every prediction is the
            # cold-start prior (docs/analytics.md)
            stats.append(read_creator_stats(settings, c, sort="reach", limit=POSTS).as_dict()
                         | {"creator_id": c})
        except UnknownStatsCreator:
            pass
    return {"notifications": {"rows": sum(by_action.values()), "by_action": dict(sorted(by_action.items())),
                              "users": users},
            "golden_moments": moments, "creator_stats": stats,
            "trends": [r.as_dict() for r in read_trends(settings, limit=TRENDS)]}


def print_delivery_summary(s: dict[str, Any], console: Console) -> None:
    """The summary's tables: notification decisions, golden moments, trends."""
    n = s.get("notifications") or {}
    if n.get("rows"):
        console.print(f"\nnotification decisions: {n['rows']} ("
                      + ", ".join(f"{a} {c}" for a, c in n["by_action"].items()) + ")")
        for u in n["users"]:
            t = Table(title=f"newest notifications of {u['user_id']}")
            for col in ("when (UTC)", "type", "action", "p", "title"):
                t.add_column(col)
            for d in u["decisions"]:
                p = d.get("propensity")
                t.add_row((d.get("sent_at") or "-")[:16].replace("T", " "), str(d["type"]).lower(),
                          str(d.get("action") or "-").lower(), f"{p:.3f}" if p is not None else "-",
                          d.get("title") or "")
            console.print(t)
    for c in s.get("golden_moments") or []:
        t = Table(title=f"golden moments of {c['creator_id']}")
        for col in ("type", "best windows (UTC, share of audience activity)", "audience", "prior weight"):
            t.add_column(col)
        for m in c["moments"]:
            windows = ", ".join(f"{DAYS[w['day_of_week']]} {w['hour']:02d}:00 ({w['score']:.3f})"
                                for w in m["windows"])
            t.add_row(m["content_type"].lower(), windows, str(m["audience_size"]), f"{m['prior_weight']:.2f}")
        console.print(t)
    for c in s.get("creator_stats") or []:
        tot = c.get("totals") or {}
        rate = tot.get("engagement_rate")
        console.print(f"\n[bold]{c['creator_id']}[/]: {tot.get('posts') or 0} posts, reach {tot.get('reach', 0)} "
                      f"people, {tot.get('likes', 0)} likes, {tot.get('comments', 0)} comments, "
                      f"{tot.get('replies', 0)} replies"
                      + (f", engagement rate {rate:.2f}" if rate is not None else ""), highlight=False)
        if c.get("posts"):
            t = Table(title=f"{c['creator_id']}'s posts by reach")
            for col in ("post", "reach", "likes", "comments", "replies", "virality", "expected at maturity"):
                t.add_column(col)
            for p in c["posts"]:
                v, e = p.get("predicted_virality"), p.get("predicted_engagement")
                t.add_row(p["post_id"], str(p["reach"]), str(p["likes"]), str(p["comments"]), str(p["replies"]),
                          f"{v:.2f}" if v is not None else "-", f"{e:.1f}" if e is not None else "-")
            console.print(t)
    trends = s.get("trends") or []
    if trends:
        t = Table(title="trending at the end of the history")
        for col in ("kind", "subject", "state", "count", "baseline", "burst z"):
            t.add_column(col)
        for r in trends:
            t.add_row(r["subject_kind"].lower(), r["subject"], r["state"].lower(), str(r["count"]),
                      f"{r['baseline_count']:.1f}", f"{r['burst_score']:.1f}")
        console.print(t)
    elif s:
        console.print("trending at the end of the history: nothing")
