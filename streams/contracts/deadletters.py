"""Dead letters: events a consumer could not decode, validate or process, kept with the reason.

Nothing is dropped: the original key and value bytes travel untouched in the ``DeadLetter`` event
on the ``dead-letters`` topic, together with where they came from (topic, partition, offset).
"""
from __future__ import annotations

import time
import uuid
from typing import Any

DEAD_LETTER_TOPIC = "dead-letters"
_NS = uuid.UUID("0b7c9a52-8a1e-4f8e-b1a3-6d3f2c9e7a10")


def dead_letter(*, source_topic: str, value: bytes | None, reason: str, error_type: str,
                consumer: str, partition: int | None = None, offset: int | None = None,
                key: bytes | None = None, headers=(), original_timestamp: int | None = None,
                producer: str = "pulse") -> dict[str, Any]:
    """A ``DeadLetter`` record.

    Its ``event_id`` is a uuid5 of (topic, partition, offset) when the position is known, so a
    re-delivered bad message yields the same dead letter; otherwise of the bytes and reason.
    """
    if partition is not None and offset is not None:
        basis = f"{source_topic}|{partition}|{offset}|{consumer}"
    else:
        basis = f"{source_topic}|{consumer}|{reason}|{(value or b'').hex()}"
    return {
        "event_id": str(uuid.uuid5(_NS, basis)),
        "event_time": int(time.time() * 1000),
        "producer": producer,
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "key": key,
        "value": value if value is not None else b"",
        "headers": [{"key": k, "value": v} for k, v in (headers or ())],
        "original_timestamp": original_timestamp,
        "reason": reason,
        "error_type": error_type,
        "consumer": consumer,
    }
