"""`pulse review list`'s reader on real Cassandra: oldest first across both queues, paged, with
claimed, decided and dangling tasks left out."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from streams.query.review import pending_tasks
from streams.query.views import view_session

from tests.integration.conftest import unique


def test_pending_tasks_merge_queues_oldest_first_across_pages(pipeline):
    run = unique("rq")
    # Each run starts earlier than the last (base falls as the clock rises), so its rows are the
    # oldest pending tasks on the server even beside rows another run left behind.
    base = datetime(1970, 1, 2) + timedelta(seconds=2**31 - int(time.time()))
    rows = []  # (queue, created_at, task_id, kind)
    for i in range(130):
        queue = "moderation" if i % 13 < 7 else "copyright"
        kind = "claimed" if i % 13 == 3 else "decided" if i % 26 == 5 else "dangling" if i == 77 else "ok"
        rows.append((queue, base + timedelta(seconds=i), f"{run}-{i:03d}", kind))
    with view_session(pipeline) as s:
        try:
            for queue, at, task_id, kind in rows:
                s.execute("INSERT INTO review_pending (queue, created_at, task_id, post_id, priority) "
                          "VALUES (%s, %s, %s, %s, 'NORMAL')", (queue, at, task_id, f"{run}-post"))
                if kind != "dangling":
                    s.execute("INSERT INTO review_tasks (task_id, queue, post_id, created_at, status, "
                              "reasons) VALUES (%s, %s, %s, %s, %s, ['because'])",
                              (task_id, queue, f"{run}-post", at,
                               "DECIDED" if kind == "decided" else "PENDING"))
                if kind == "claimed":
                    s.execute("INSERT INTO review_claims (task_id, reviewer_id, action, claimed_at) "
                              "VALUES (%s, 'mod', 'ALLOW', %s)", (task_id, at))
            ok = [r for r in rows if r[3] == "ok"]
            assert len(ok) > 100

            got = pending_tasks(pipeline, limit=100)
            assert [t["task_id"] for t in got] == [r[2] for r in ok[:100]]
            assert got[0]["reasons"] == ["because"]

            # pages of 8 rows per queue: many refills, merges bounded by the queue read least far
            paged = pending_tasks(pipeline, limit=100, page_size=8)
            assert [t["task_id"] for t in paged] == [r[2] for r in ok[:100]]
            small = pending_tasks(pipeline, limit=7, page_size=3)
            assert [t["task_id"] for t in small] == [r[2] for r in ok[:7]]

            copyright_only = pending_tasks(pipeline, limit=30, queue="copyright")
            assert [t["task_id"] for t in copyright_only] == [r[2] for r in ok if r[0] == "copyright"][:30]
            assert pending_tasks(pipeline, limit=0) == []
        finally:
            for queue, at, task_id, _ in rows:
                s.execute("DELETE FROM review_pending WHERE queue = %s AND created_at = %s AND task_id = %s",
                          (queue, at, task_id))
                s.execute("DELETE FROM review_tasks WHERE task_id = %s", (task_id,))
                s.execute("DELETE FROM review_claims WHERE task_id = %s", (task_id,))
