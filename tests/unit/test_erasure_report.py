"""An erasure's report is complete only when every row a component wrote is visible: the sink
writes a component's rows in one batch, but not atomically."""
from __future__ import annotations

from collections import namedtuple

from streams.query.erasure import fold_report

Row = namedtuple("Row", "component item count user_id scope detail erased_at")


def row(component, item, count, **kw):
    return Row(component, item, count, kw.get("user_id"), kw.get("scope"), kw.get("detail"), None)


def test_a_component_is_done_when_its_done_row_and_every_item_it_totals_are_visible():
    rows = [row("eraser", "request", 5, user_id="ada", scope="USER"), row("eraser", "view:posts", 2),
            row("eraser", "vectors:content", 2), row("eraser", "done", 4),
            row("user_profiler", "state:profiles", 1), row("user_profiler", "done", 1)]
    report = fold_report("r1", rows)
    assert report.user_id == "ada" and report.done == {"eraser", "user_profiler"}
    assert report.components["eraser"] == {"view:posts": 2, "vectors:content": 2}
    assert report.missing(["eraser", "user_profiler", "feed_ranker"]) == ["feed_ranker"]


def test_a_done_row_seen_before_its_items_or_the_request_row_is_not_done_yet():
    early = fold_report("r1", [row("eraser", "view:posts", 2), row("eraser", "done", 4),
                               row("eraser", "request", 5, user_id="ada")])
    assert "eraser" not in early.done  # vectors:content (2) not visible yet
    no_request = fold_report("r1", [row("eraser", "view:posts", 4), row("eraser", "done", 4)])
    assert "eraser" not in no_request.done and no_request.user_id is None
    nothing_held = fold_report("r1", [row("feed_ranker", "state:feeds", 0), row("feed_ranker", "done", 0)])
    assert nothing_held.done == {"feed_ranker"}
