"""The live stream's diff of two polls (``streams.api.live.LiveState``)."""
from __future__ import annotations

import json

from streams.api.live import LiveState


def _events(chunks):
    out = []
    for c in chunks:
        lines = dict(line.split(": ", 1) for line in c.strip().splitlines())
        out.append((lines["event"], lines.get("id"), json.loads(lines["data"])))
    return out


def _n(nid):
    return {"notification_id": nid, "type": "LIKE"}


def test_the_baseline_sends_nothing_then_only_news_oldest_first():
    s = LiveState()
    feed = {"generated_at": "t1", "items": [{"post_id": "p1"}, {"post_id": "p2"}]}
    assert s.diff([_n("b"), _n("a")], feed, first=True) == []
    assert s.diff([_n("b"), _n("a")], feed) == []  # nothing new
    got = _events(s.diff([_n("d"), _n("c"), _n("b")], feed))
    assert [(e, i) for e, i, _ in got] == [("notification", "c"), ("notification", "d")]


def test_a_feed_event_only_when_reranked_with_posts_it_did_not_hold():
    s = LiveState()
    s.diff([], {"generated_at": "t1", "items": [{"post_id": "p1"}, {"post_id": "p2"}]}, first=True)
    assert s.diff([], {"generated_at": "t2", "items": [{"post_id": "p2"}, {"post_id": "p1"}]}) == []  # reordered
    got = _events(s.diff([], {"generated_at": "t3", "items": [{"post_id": "p3"}, {"post_id": "p1"}]}))
    assert got == [("feed", None, {"generated_at": "t3", "new_entries": [{"post_id": "p3"}]})]
    assert s.diff([], {"generated_at": "t3", "items": [{"post_id": "p9"}]}) == []  # same ranking time
