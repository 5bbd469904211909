"""Hashtag suggestions on the real Cassandra (``trending`` rows as trend_detector writes them) and
the real embedded vector engine (``content`` points as clip_ai writes them, with MiniLM
embeddings of real sentences): a trend whose posts are about the post's subject comes first, an
unrelated trend is left out, CLIP AI's suggestions fill the rest, the post's own tags never
appear."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from streams.query.hashtags import UnknownPost, suggest_hashtags
from streams.stores.cassandra import connect
from streams.stores.vectors import Point
from streams.stores.vectors.base import load_collection_specs

from tests.integration.conftest import unique

QUANTUM = ["CNOT gate error rates on superconducting transmon qubits",
           "Measuring two-qubit gate fidelity with randomized benchmarking",
           "Why are CNOT gates slower than single-qubit gates on superconducting hardware?"]
PASTA = ["The best way to cook fresh pasta with tomato and basil sauce",
         "How long should spaghetti boil before it is al dente?",
         "A creamy carbonara recipe without cream"]
POST = "What is the fidelity of a CNOT gate on superconducting qubits?"


@pytest.fixture(scope="module")
def minilm():
    from models.clip.text import MiniLM

    try:
        return MiniLM()
    except FileNotFoundError as exc:
        pytest.skip(f"MiniLM weights absent: {exc}")


def test_trends_like_the_post_come_first_then_clip_ai_suggestions(pipeline, minilm, tmp_path):
    from streams.stores.vectors.edge_index import EdgeIndex

    run = unique("t")
    qtag, ptag = f"qubits{run}".replace("-", ""), f"pasta{run}".replace("-", "")
    post = f"{run}-post"
    vectors = minilm.encode([POST, *QUANTUM, *PASTA])
    now = datetime.now(timezone.utc)
    cluster, session = connect(pipeline, pipeline.cassandra_keyspace)
    try:
        for tag, samples, burst in ((qtag, [f"{run}-q{i}" for i in range(3)], 900.0),
                                    (ptag, [f"{run}-p{i}" for i in range(3)], 950.0)):
            session.execute("INSERT INTO trending (subject_kind, subject, state, started_at, updated_at, "
                            "count, baseline_count, burst_score, sample_post_ids) VALUES "
                            "('HASHTAG', %s, 'ONGOING', %s, %s, 40, 3.0, %s, %s)",
                            (tag, now, now, burst, [*samples, post]))
    finally:
        cluster.shutdown()
    with EdgeIndex(tmp_path / "edge") as index:
        index.ensure_collection(load_collection_specs()["content"])
        points = [Point(post, {"semantic": vectors[0], "text": vectors[0]},
                        {"post_id": post, "hashtags": ["cnot"],
                         "suggested_hashtags": ["cnot", "quantum-gate", "superconducting", qtag]})]
        points += [Point(f"{run}-q{i}", {"semantic": v}, {"post_id": f"{run}-q{i}"}) for i, v in enumerate(vectors[1:4])]
        points += [Point(f"{run}-p{i}", {"semantic": v}, {"post_id": f"{run}-p{i}"}) for i, v in enumerate(vectors[4:7])]
        index.upsert("content", points)

        got = suggest_hashtags(pipeline, index, post, limit=4)
        assert [g.tag for g in got] == [qtag, "quantum-gate", "superconducting"]
        first = got[0]
        assert first.source == "trending+content" and first.content_rank == 4 and first.burst_score == 900.0
        assert first.similarity >= 0.5
        assert all(g.source == "content" and g.similarity is None for g in got[1:])
        # the pasta trend bursts harder but is not about the post: left out at the default cut,
        # in only when the cut allows unrelated content
        loose = suggest_hashtags(pipeline, index, post, limit=4, min_similarity=-1.0)
        assert ptag in [g.tag for g in loose]
        assert [g.tag for g in suggest_hashtags(pipeline, index, post, max_trending=0)] == \
            ["quantum-gate", "superconducting", qtag]
        with pytest.raises(UnknownPost):
            suggest_hashtags(pipeline, index, f"{run}-missing")
