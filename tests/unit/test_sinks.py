"""The vector sink on the real embedded engine (qdrant-edge), and effect routing in SinkSet."""
from __future__ import annotations

import numpy as np
import pytest

from streams.contracts.effects import Upsert, VectorDelete, VectorSetPayload, VectorUpsert
from streams.settings import Settings
from streams.sinks.writers import SinkError, SinkSet, VectorSink
from streams.stores.vectors import CollectionSpec, open_vector_index


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


def test_set_payload_effects_merge_into_existing_points_without_touching_vectors(index):
    sinks = SinkSet(vectors=VectorSink(index))
    sinks.write([VectorUpsert("content", f"p{i}", vec(i), {"creator_id": "u1", "kind": "image"}) for i in range(4)])
    published = VectorSetPayload("content", ("p0", "p1", "missing"), {"published": True, "moderation_action": "ALLOW"})
    assert sinks.write([published, VectorSetPayload("content", ("p2",), {"published": False})]) == 4
    assert sinks.write([published]) == 3  # re-delivery: same payloads
    got = {p.id: p for p in index.get("content", ["p0", "p1", "p2", "p3", "missing"])}
    assert set(got) == {"p0", "p1", "p2", "p3"}  # no point made for the missing id
    assert got["p0"].payload == {"creator_id": "u1", "kind": "image", "published": True, "moderation_action": "ALLOW"}
    assert got["p2"].payload == {"creator_id": "u1", "kind": "image", "published": False}
    assert got["p3"].payload == {"creator_id": "u1", "kind": "image"}
    np.testing.assert_allclose(got["p0"].vector, vec(0))
    assert [h.id for h in index.search("content", vec(1), limit=4, must={"published": True})][0] == "p1"


def test_set_payload_within_one_batch_applies_in_order(index):
    sink = VectorSink(index)
    sinks = SinkSet(vectors=sink)
    sinks.write([VectorUpsert("content", "old", vec(5), {"creator_id": "u0"})])
    sinks.add([
        VectorSetPayload("content", ("a",), {"published": True}),  # before a's upsert: overwritten by it
        VectorUpsert("content", "a", vec(0), {"creator_id": "u1"}),
        VectorUpsert("content", "b", vec(1), {"creator_id": "u2"}),
        VectorSetPayload("content", ("b",), {"published": True}),  # after b's upsert: merged into it
        VectorSetPayload("content", ("b",), {"moderation_action": "BLOCK", "published": False}),
        VectorDelete("content", ("old",)),
        VectorSetPayload("content", ("old",), {"published": True}),  # after a delete: dropped
    ])
    assert len(sink) == 3  # two upserts and one delete: the payload updates were folded in
    assert sinks.flush() == 3
    got = {p.id: p.payload for p in index.get("content", ["a", "b", "old"])}
    assert got == {"a": {"creator_id": "u1"},
                   "b": {"creator_id": "u2", "published": False, "moderation_action": "BLOCK"}}


MARKS = ("published", "gate_status")


def test_upsert_keeps_another_writers_keys_from_the_stored_point(index):
    sinks = SinkSet(vectors=VectorSink(index))
    sinks.write([VectorUpsert("content", f"p{i}", vec(i), {"creator_id": "u1"}) for i in range(3)])
    sinks.write([VectorSetPayload("content", ("p0", "p1"), {"published": True, "gate_status": "PUBLISHED"})])
    # the enrichment is re-run: new payload, the publisher's marks stay unless set
    sinks.write([VectorUpsert("content", "p0", vec(4), {"creator_id": "u2"}, keep=MARKS),
                 VectorUpsert("content", "p1", vec(1), {"creator_id": "u1", "published": False}, keep=MARKS),
                 VectorUpsert("content", "p2", vec(2), {"creator_id": "u1"}, keep=MARKS),
                 VectorUpsert("content", "new", vec(5), {"creator_id": "u3"}, keep=MARKS)])
    got = {p.id: p for p in index.get("content", ["p0", "p1", "p2", "new"])}
    assert got["p0"].payload == {"creator_id": "u2", "published": True, "gate_status": "PUBLISHED"}
    np.testing.assert_allclose(got["p0"].vector, vec(4))
    assert got["p1"].payload == {"creator_id": "u1", "published": False, "gate_status": "PUBLISHED"}
    assert got["p2"].payload == {"creator_id": "u1"} and got["new"].payload == {"creator_id": "u3"}
    # without keep an upsert still replaces the whole payload
    sinks.write([VectorUpsert("content", "p0", vec(0), {"creator_id": "u2"})])
    assert index.get("content", ["p0"])[0].payload == {"creator_id": "u2"}


def test_upsert_keep_within_one_batch(index):
    sink = VectorSink(index)
    sinks = SinkSet(vectors=sink)
    sinks.write([VectorUpsert("content", i, vec(0), {"creator_id": "u0", "published": True})
                 for i in ("a", "b", "c", "d")])
    sinks.add([
        # a payload update buffered before the upsert is kept by it
        VectorSetPayload("content", ("a",), {"gate_status": "BLOCKED", "published": False}),
        VectorUpsert("content", "a", vec(1), {"creator_id": "u1"}, keep=MARKS),
        # deleted earlier in the batch: the stored point's marks are gone with it
        VectorDelete("content", ("b",)),
        VectorUpsert("content", "b", vec(2), {"creator_id": "u2"}, keep=MARKS),
        # an earlier upsert without keep replaced the payload: nothing to read from storage
        VectorUpsert("content", "c", vec(3), {"creator_id": "u3", "gate_status": "PENDING"}),
        VectorUpsert("content", "c", vec(3), {"creator_id": "u3b"}, keep=MARKS),
        # two keeping upserts in a row: the stored marks survive both
        VectorUpsert("content", "d", vec(4), {"creator_id": "u4"}, keep=MARKS),
        VectorUpsert("content", "d", vec(4), {"creator_id": "u4b"}, keep=MARKS),
    ])
    sinks.flush()
    got = {p.id: p.payload for p in index.get("content", ["a", "b", "c", "d"])}
    assert got == {"a": {"creator_id": "u1", "gate_status": "BLOCKED", "published": False},
                   "b": {"creator_id": "u2"},
                   "c": {"creator_id": "u3b", "gate_status": "PENDING"},
                   "d": {"creator_id": "u4b", "published": True}}


def test_failed_set_payload_stays_buffered(index, monkeypatch):
    sink = VectorSink(index)
    sink.add(VectorSetPayload("content", ("p0",), {"published": True}))

    def broken(*args, **kwargs):
        raise RuntimeError("engine down")

    monkeypatch.setattr(index, "set_payload", broken)
    with pytest.raises(SinkError, match="engine down"):
        sink.flush()
    assert len(sink) == 1


def test_set_payload_on_a_collection_that_does_not_exist_is_dropped(index):
    # like an id without a point: there is nothing to update (e.g. a publisher marking posts
    # before clip_ai ever created the collection), and the batch must not wait forever
    sink = VectorSink(index)
    sink.add(VectorSetPayload("nope", ("p0",), {"published": True}))
    assert sink.flush() == 0 and len(sink) == 0
    with pytest.raises(TypeError, match="tuple of ids"):
        sink.add(VectorSetPayload("content", "p0", {"published": True}))


def test_sinkset_refuses_effects_without_their_store():
    with pytest.raises(SinkError, match="no Cassandra is configured"):
        SinkSet().write([Upsert("posts", {"post_id": "p"}, 1)])
    with pytest.raises(SinkError, match="no vector index is open"):
        SinkSet().write([VectorDelete("content", ("p",))])
    with pytest.raises(SinkError, match="no vector index is open"):
        SinkSet().write([VectorSetPayload("content", ("p",), {"published": True})])


def test_upsert_creates_a_missing_collection_with_the_upserted_widths(tmp_path, monkeypatch):
    # a fresh qdrant-client local-mode index: no collection until the sink's first upsert, which
    # creates it from infra/qdrant/collections.toml with the widths of the vectors it carries
    index = open_vector_index(Settings.from_env({"PULSE_HOME": str(tmp_path)}), backend="local",
                              path=tmp_path / "local")
    ensured = []
    real_ensure = index.ensure_collection
    monkeypatch.setattr(index, "ensure_collection", lambda spec: (ensured.append(spec.name),
                                                                  real_ensure(spec)))
    try:
        sinks = SinkSet(vectors=VectorSink(index))
        rng = np.random.default_rng(0)
        image = {"image": rng.normal(size=512), "semantic": rng.normal(size=384)}  # a CLIP tower
        text = {"semantic": rng.normal(size=384), "text": rng.normal(size=384)}
        assert sinks.write([VectorUpsert("content", "p-image", image, {"kind": "image"}),
                            VectorUpsert("content", "p-text", text, {"kind": "text"})]) == 2
        # image_dim came from the image vector (the file says 1280); clip_text shares its width
        assert index.dims("content") == {"image": 512, "semantic": 384, "text": 384,
                                         "clip_text": 512}
        assert index.count("content") == 2
        assert [h.id for h in index.search("content", image["image"], limit=1, using="image",
                                           must={"kind": "image"})] == ["p-image"]
        # an unnamed width (user_interests: size = "embedding_dim") comes from the vector's length
        sinks.write([VectorUpsert("user_interests", "u1", rng.normal(size=16), {"user_id": "u1"})])
        assert index.dims("user_interests") == 16
        # each collection is checked once per sink
        sinks.write([VectorUpsert("content", "p-text", text, {"kind": "text"})])
        assert ensured == ["content", "user_interests"]
        # a collection the file does not define is not made up: the upsert fails and stays buffered
        sink = VectorSink(index)
        sink.add(VectorUpsert("nope", "x", rng.normal(size=4)))
        with pytest.raises(SinkError, match="nope"):
            sink.flush()
        assert len(sink) == 1
        # vectors that disagree on a named width: nothing is created
        sink = VectorSink(index, collections=tmp_path / "none.toml")
        (tmp_path / "none.toml").write_text('w = 8\n[collections.pair]\ndistance = "cosine"\n'
                                            '[collections.pair.vectors]\na = "w"\nb = "w"\n')
        sink.add(VectorUpsert("pair", "x", {"a": rng.normal(size=4), "b": rng.normal(size=6)}))
        with pytest.raises(SinkError, match="lengths 4 and 6"):
            sink.flush()
        assert "pair" not in ensured and len(sink) == 1
    finally:
        index.close()
