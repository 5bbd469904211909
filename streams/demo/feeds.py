"""Feeds in `pulse demo`: the top of a few users' materialized feeds (with each post's source and
the signals that placed it) and their profiles in words, read from Cassandra after the run.

Each feed is shown as ranked at the user's last activity (the read without the fresh pool), and
a second line says what a read now adds: the demo's history ends long after most users' last
event, so a read now ranks the posts published since (source RECENT, read-time ranking) at the
top of nearly every feed, which would hide what the ranker learned about the user."""
from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console

from streams.settings import Settings

#: Users shown: the most active ones, and one who engaged fewer than three times (a cold start).
ACTIVE_USERS = 2
TOP = 5


def pick_users(events: list[tuple[str, dict]]) -> list[str]:
    """The :data:`ACTIVE_USERS` users with the most interactions (ties by id), then the first user
    by id with one or two (a cold-start profile), from the demo's ``(topic, record)`` events."""
    counts = Counter(r["user_id"] for t, r in events if t == "interactions"
                     and not r["user_id"].endswith("-anonymous"))
    active = [u for u, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:ACTIVE_USERS]]
    cold = sorted(u for u, n in counts.items() if 1 <= n <= 2)
    return active + cold[:1]


def feed_summary(settings: Settings, users: list[str]) -> dict[str, Any]:
    """``{"users": [{"user_id", "profile": [sentences], "feed": [items], "total"}],
    "feeds": rows in user_feeds}`` (empty lists when the feed agents did not run)."""
    from streams.query.feeds import describe_profile, read_feed, read_profile
    from streams.query.views import table_counts

    out = {"users": [], "feeds": table_counts(settings, ("user_feeds", "profiles"))}
    for u in users:
        page = read_feed(settings, u, limit=TOP, fresh=0)
        now = read_feed(settings, u, limit=TOP)
        profile = read_profile(settings, u)
        out["users"].append({
            "user_id": u, "total": page.total,
            "profile": describe_profile(profile) if profile else [],
            "feed": [{"post_id": i.post_id, "creator_id": i.creator_id, "score": i.score,
                      "source": i.source, "reasons": i.reasons} for i in page.items],
            "read_now": {"total": now.total, "recent_in_top": sum(i.source == "RECENT" for i in now.items),
                         "top": [i.post_id for i in now.items]}})
    return out


def print_feed_summary(s: dict[str, Any], console: Console) -> None:
    if not s.get("users"):
        return
    console.print(f"feeds materialized: {s['feeds'].get('user_feeds', 0)} users, "
                  f"profiles: {s['feeds'].get('profiles', 0)}")
    for u in s["users"]:
        console.print(f"\n[bold]{u['user_id']}[/]: top {len(u['feed'])} of {u['total']} posts in the feed")
        for line in u["profile"]:
            console.print(f"  {line}", highlight=False)
        for rank, item in enumerate(u["feed"], 1):
            console.print(f"  {rank}. {item['post_id']} by {item['creator_id']}  score {item['score']:.3f}  "
                          f"({item['source'].lower()}: {', '.join(item['reasons'][:-1])})", highlight=False)
        now = u.get("read_now")
        if now and now["top"]:
            console.print(f"  read now (read-time ranking): {now['recent_in_top']} of the top {len(now['top'])} "
                          f"published since the user's last activity; first: {now['top'][0]}", highlight=False)
