"""A side input over a compacted topic forgets a tombstoned key as of the tombstone's Kafka
timestamp (SideInputReader -> SideState.forget), on the real broker: the eraser's ``profiles``
tombstone takes an erased user out of a running worker's interest vectors without a restart."""
from __future__ import annotations

import time
import uuid

from agents.shared.social import UserInterests
from streams.contracts.codec import codec_for
from streams.contracts.topics import topic_spec
from streams.producer import Publisher
from streams.runtime.side_inputs import SideInputReader
from tests.unit.agent_harness import full_record

HOUR = 3_600_000


def test_a_profiles_tombstone_makes_the_side_state_forget_the_user(pipeline):
    ada, bob = f"ada-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    earlier = int(time.time() * 1000) - 3 * HOUR
    with Publisher(pipeline, producer_name="test-side-forget") as pub:
        for user in (ada, bob):
            pub.publish("profiles", full_record("profiles", user_id=user, event_time=earlier, sequence=1,
                                                interest_vector=[1.0, 0.0, 0.0, 0.0]))
        pub.flush()
        pub.produce_raw("profiles", ada.encode(), None)  # the eraser's tombstone, stamped now
    state = UserInterests()
    reader = SideInputReader(pipeline, "profiles", state.apply,
                             codec_for(pipeline, topic_spec("profiles").schema, "profiles"),
                             name="test-forget", forget=state.forget)
    try:
        reader.catch_up()
    finally:
        reader.close()
    now = int(time.time() * 1000)
    assert state.vector(bob, now + 2 * HOUR) is not None
    assert state.vector(ada, now - HOUR) is not None          # before the erasure: as it was
    assert state.vector(ada, now + 2 * HOUR) is None          # after it: forgotten
