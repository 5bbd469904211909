"""The packed feed of ``user_feeds.feed`` (models/ranking/feed_row.py): round trip, determinism,
errors, and read-time ranking equal to that of the collection columns it replaced."""
from __future__ import annotations

import numpy as np
import pytest

from models.ranking.feed_row import FeedRowError, pack_feed, signals_as, stored_post_ids, unpack_feed
from models.ranking.readtime import SIGNAL_NAMES, FreshPost, feed_inputs, rerank

T = 1_700_000_000_000


def feed(n: int = 30, seed: int = 3, dim: int = 8) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "post_ids": [f"p{j}" for j in range(n)], "creator_ids": [f"c{j % 7}" for j in range(n)],
        "sources": [("IN_NETWORK", "INTEREST", "COLD_START")[j % 3] for j in range(n)],
        "content_types": [("FLASH", "MEMORY", "FOREVER")[j % 3] for j in range(n)],
        "published_at": [T - j * 3_600_000 for j in range(n)],
        "scores": np.round(rng.random(n), 9).tolist(), "signal_names": SIGNAL_NAMES,
        "signals": np.round(rng.random((n, len(SIGNAL_NAMES))), 6).tolist(),
        "interest_vector": rng.standard_normal(dim).astype(np.float32).tolist(),
        "hashtag_affinity": {"qiskit": 0.9, "noise": -0.25, "é-ünïcode": 1 / 3},
        "category_affinity": {"science": 0.5, "music": 0.125},
    }


def test_a_feed_round_trips_exactly():
    f = feed()
    got = unpack_feed(pack_feed(**f))
    assert got.post_ids == f["post_ids"] and got.creator_ids == f["creator_ids"]
    assert got.sources == f["sources"] and got.content_types == f["content_types"]
    assert got.published_at == f["published_at"] and all(type(t) is int for t in got.published_at)
    assert got.scores.tolist() == f["scores"] and got.signals.tolist() == f["signals"]
    assert got.signal_names == SIGNAL_NAMES
    assert got.interest_vector.tolist() == np.asarray(f["interest_vector"], dtype=np.float32).tolist()
    assert got.hashtag_affinity == f["hashtag_affinity"]
    assert got.category_affinity == f["category_affinity"]
    scored = got.scored()
    assert [s.post_id for s in scored] == f["post_ids"]
    assert scored[0].signals == dict(zip(SIGNAL_NAMES, f["signals"][0]))
    assert scored[0].reasons()[-1] == "source in_network"


def test_the_bytes_depend_on_the_feed_only():
    f = feed()
    shuffled = {**f, "hashtag_affinity": dict(reversed(list(f["hashtag_affinity"].items())))}
    assert pack_feed(**f) == pack_feed(**shuffled) == pack_feed(**feed())
    assert pack_feed(**f) != pack_feed(**feed(seed=4))


def test_an_empty_feed_and_a_missing_vector():
    empty = unpack_feed(pack_feed([], [], [], [], [], [], SIGNAL_NAMES, [], None))
    assert len(empty) == 0 and empty.signals.shape == (0, len(SIGNAL_NAMES))
    assert empty.interest_vector is None and empty.scored() == []
    assert unpack_feed(pack_feed(**{**feed(), "interest_vector": []})).interest_vector is None


def test_columns_of_different_lengths_are_refused():
    f = feed()
    with pytest.raises(ValueError, match="one value per item"):
        pack_feed(**{**f, "sources": f["sources"][:-1]})
    with pytest.raises(ValueError, match="signals must be 30 rows"):
        pack_feed(**{**f, "signals": [row[:-1] for row in f["signals"]]})


@pytest.mark.parametrize("data, match", [
    (b"", "format 1"), (b"\x02rest", "first byte 2"), (b"\x01", "cannot be read"),
    (b"\x01\xff\x00\x00\x00{}", "cannot be read"), (b"\x01\x02\x00\x00\x00{}", "cannot be read"),
])
def test_bytes_that_are_not_a_packed_feed_raise_feed_row_error(data, match):
    with pytest.raises(FeedRowError, match=match):
        unpack_feed(data)


def test_every_truncation_and_an_extra_byte_raise_feed_row_error():
    data = pack_feed(**feed(n=3, dim=2))
    for end in range(len(data)):
        with pytest.raises(FeedRowError):
            unpack_feed(data[:end])
    with pytest.raises(FeedRowError, match="bytes, not the"):
        unpack_feed(data + b"\x00")


def test_signals_are_mapped_by_name():
    f = feed(n=4)
    names = tuple(reversed(SIGNAL_NAMES[:-1]))  # a writer without the last signal, another order
    columns = [[row[SIGNAL_NAMES.index(k)] for k in names] for row in f["signals"]]
    got = signals_as(unpack_feed(pack_feed(**{**f, "signal_names": names, "signals": columns})),
                     SIGNAL_NAMES)
    expect = np.asarray(f["signals"])
    expect[:, -1] = 0.0
    assert got.tolist() == expect.tolist()


def test_stored_post_ids_reads_both_formats():
    f = feed(n=5)
    assert stored_post_ids({"feed": pack_feed(**f)}) == f["post_ids"]
    assert stored_post_ids({"items": [("a", "c", 1.0, "INTEREST", [], T)]}) == ["a"]
    assert stored_post_ids({}) == []


def collections_row(f: dict) -> dict:
    """The same feed as the collection columns rankers wrote before the packed feed."""
    return {"items": [(p, c, s, src, [], t) for p, c, s, src, t in
                      zip(f["post_ids"], f["creator_ids"], f["scores"], f["sources"], f["published_at"])],
            "signals": f["signals"], "content_types": f["content_types"],
            "interest_vector": f["interest_vector"], "hashtag_affinity": f["hashtag_affinity"],
            "category_affinity": f["category_affinity"]}


def test_read_time_ranking_of_a_packed_row_equals_that_of_the_collection_columns():
    f = feed(n=40, dim=8)
    rng = np.random.default_rng(9)
    pool = [FreshPost(f"f{j}", f"c{j % 5}", T + 1000 * (j + 1), content_type="FLASH",
                      hashtags=("qiskit",) if j % 2 else (), categories=(("science", 0.8),),
                      quality=0.6, trust=0.9, vector=rng.standard_normal(8).astype(np.float32))
            for j in range(25)]
    packed = feed_inputs("u", {"feed": pack_feed(**f)}, T)
    legacy = feed_inputs("u", collections_row(f), T)
    for now in (T, T + 12_000, T + 90 * 3_600_000):
        a = rerank(packed[0], pool, packed[1], now, 50, exclude={"p3", "f4"})
        b = rerank(legacy[0], pool, legacy[1], now, 50, exclude={"p3", "f4"})
        assert [(s.post_id, s.score, s.source, s.reasons()) for s in a] \
            == [(s.post_id, s.score, s.source, s.reasons()) for s in b]
        fresh = sum(1 for p in pool if p.published_at <= now and p.post_id != "f4")
        assert len(a) == min(50, 39 + fresh) and "p3" not in [s.post_id for s in a]
