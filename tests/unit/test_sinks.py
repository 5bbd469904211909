"""The vector sink on the real embedded engine (qdrant-edge), and effect routing in SinkSet."""
from __future__ import annotations

import numpy as np
import pytest

from streams.effects import Upsert, VectorDelete, VectorUpsert
from streams.settings import Settings
from streams.sinks import SinkError, SinkSet, VectorSink
from streams.vectors import CollectionSpec, open_vector_index


@pytest.fixture
def index(tmp_path):
    idx = open_vector_index(Settings.from_env({"PULSE_HOME": str(tmp_path)}), backend="edge")
    idx.ensure_collection(CollectionSpec("content", 8, "cosine", {"creator_id": "keyword"}))
    yield idx
    idx.close()


def vec(i):
    v = np.zeros(8, dtype=np.float32)
    v[i % 8] = 1.0
    return v


def test_vector_sink_writes_batches_idempotently_last_write_wins(index):
    sink = VectorSink(index)
    sinks = SinkSet(vectors=sink)
    effects = [VectorUpsert("content", f"p{i}", vec(i), {"creator_id": "u1"}) for i in range(5)]
    assert sinks.write(effects) == 5
    assert sinks.write(effects) == 5  # re-delivery: same ids, same points
    assert index.count("content") == 5
    # within one batch the last effect on an id wins, deletes included
    sinks.write([VectorUpsert("content", "p0", vec(3), {"creator_id": "u2"}),
                 VectorDelete("content", ("p1",)),
                 VectorUpsert("content", "p1", vec(1), {"creator_id": "u3"}),
                 VectorDelete("content", ("p2",))])
    got = {p.id: p.payload["creator_id"] for p in index.get("content", ["p0", "p1", "p2"])}
    assert got == {"p0": "u2", "p1": "u3"}
    hits = index.search("content", vec(3), limit=2)
    assert {h.id for h in hits} == {"p0", "p3"}
    assert len(sink) == 0 and sink.points_written == 13


def test_sinkset_refuses_effects_without_their_store():
    with pytest.raises(SinkError, match="no Cassandra is configured"):
        SinkSet().write([Upsert("posts", {"post_id": "p"}, 1)])
    with pytest.raises(SinkError, match="no vector index is open"):
        SinkSet().write([VectorDelete("content", ("p",))])
