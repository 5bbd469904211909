"""Two `pulse worker` processes in one consumer group share the partitions; when one is killed
(SIGKILL, no clean shutdown) the other takes its partitions over, and the views end up with
every event exactly once."""
from __future__ import annotations

import signal

from confluent_kafka.admin import AdminClient

from streams.producer import Publisher
from streams.query.views import follow_summary, posts_by_creator

from tests.integration.conftest import unique, wait_until
from tests.integration.test_publish import upload_line
from tests.integration.test_worker_views import caught_up

TOPICS = ["uploads", "signups", "follows"]


def group_members(settings, group):
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return [m for m in desc.members if m.assignment and m.assignment.topic_partitions]


def test_killed_worker_partitions_move_to_the_survivor(pipeline, workers):
    app_id = unique("takeover")
    creator = unique("c")
    n = 3000
    a = workers.start(app_id)
    b = workers.start(app_id)
    wait_until(lambda: len(group_members(pipeline, app_id)) == 2, 120, "both workers to own partitions",
               diagnose=lambda: workers.log(a) + workers.log(b))

    def publish(lo, hi):
        with Publisher(pipeline) as pub:
            for i in range(lo, hi):
                pub.publish("uploads", upload_line(f"{creator}-{i:05d}", creator, event_time=1_600_000_000_000 + i))
                pub.publish("follows", {"follower_id": f"{creator}-fan{i:05d}", "followee_id": creator,
                                        "action": "FOLLOW", "event_time": 1_600_000_000_000 + i})

    publish(0, n)
    # kill one worker while the stream is flowing: it has processed some of its share at most
    wait_until(lambda: len(posts_by_creator(pipeline, creator, limit=10)) > 0, 120, "the first rows")
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    publish(n, 2 * n)
    wait_until(lambda: len(group_members(pipeline, app_id)) == 1, 60, "the group to drop the killed worker")
    wait_until(lambda: caught_up(pipeline, app_id, TOPICS), 240, "the survivor to commit every offset",
               diagnose=lambda: workers.log(b))

    assert b.poll() is None, workers.log(b)
    rows = posts_by_creator(pipeline, creator, limit=10 * n)
    ids = [r["post_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 2 * n  # nothing lost, nothing doubled
    assert follow_summary(pipeline, creator)["followers"] == 2 * n
