"""Read-time ranking (models.ranking.readtime): stored items re-scored for the reading time, the
fresh pool's posts published since the ranking added, filters, and determinism."""
from __future__ import annotations

import numpy as np
import pytest

from models.ranking import relevance as R
from models.ranking.readtime import SIGNAL_NAMES, FreshPost, Reader, StoredItem, rerank

H = 3_600_000
T = 1_700_000_000_000


def stored(post, creator, published_at, **signals):
    base = {k: 0.0 for k in SIGNAL_NAMES}
    base.update(signals)
    return StoredItem(post, creator, "INTEREST", published_at, "FOREVER", base)


def unit(*xs):
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_stored_items_are_rescored_for_the_reading_time():
    # "new" is one hour old at the ranking, "good" a week old but close to the user's interests
    items = [stored("new", "a", T - H, novelty=R.novelty_array([H])[0], interest=0.0),
             stored("good", "b", T - 168 * H, novelty=R.novelty_array([168 * H])[0], interest=1.0)]
    reader = Reader("u", T)
    at_ranking = rerank(items, [], reader, T, 10)
    assert [s.post_id for s in at_ranking] == ["new", "good"]
    # two days later "new" has lost most of its novelty; the interest match stands
    later = rerank(items, [], reader, T + 48 * H, 10)
    assert [s.post_id for s in later] == ["good", "new"]
    assert later[1].signals["novelty"] == pytest.approx(2 ** (-49 / R.NOVELTY_HALF_LIFE_H), abs=1e-6)
    # a reading time before the ranking counts as the ranking time
    assert [s.score for s in rerank(items, [], reader, T - 10 * H, 10)] == [s.score for s in at_ranking]


def test_the_fresh_pool_adds_posts_published_since_the_ranking():
    reader = Reader("u", T, vector=unit(1, 0), hashtags={"qubits": 1.0})
    pool = [
        FreshPost("before", "a", T - 1),                      # already considered by the ranking
        FreshPost("q", "a", T + H, vector=unit(1, 0), hashtags=("qubits",), trust=0.9, quality=0.8),
        FreshPost("off", "c", T + H, vector=unit(0, 1)),
        FreshPost("reply", "d", T + 2 * H, is_reply=True, parent_creator_id="u"),
        FreshPost("mine", "u", T + H),                        # the reader's own
        FreshPost("gone", "e", T + H, expires_at=T + 2 * H),  # expired by the read
        FreshPost("down", "f", T + H),                        # taken down
        FreshPost("future", "g", T + 5 * H),                  # after the reading time
        FreshPost("dup", "h", T + H),                         # also in the stored feed
    ]
    items = [stored("dup", "h", T - H, novelty=0.9)]
    out = rerank(items, pool, reader, T + 3 * H, 50, exclude={"down"})
    got = {s.post_id: s for s in out}
    assert set(got) == {"q", "off", "reply", "dup"}
    assert got["dup"].source == "INTEREST" and got["q"].source == "RECENT"
    q = got["q"].signals
    assert q["interest"] == pytest.approx(1.0) and q["hashtag"] == 1.0 and q["top_level"] == 1.0
    assert q["trust"] == 0.9 and q["quality"] == 0.8 and q["following"] == 0.0
    assert got["off"].signals["interest"] == 0.0 and got["off"].signals["quality"] == 0.5
    assert got["reply"].signals["reply"] == 1.0 and got["reply"].signals["top_level"] == 0.0
    assert out[0].post_id == "q"  # newest-equal, on topic, good: first
    assert "source recent" in out[0].reasons()


def test_pulled_entries_keep_their_source_and_note_and_authors_are_diversified():
    reader = Reader("u", T)
    pool = [FreshPost(f"big{i}", "big", T + i, source="IN_NETWORK", following=1.0,
                      note="pulled at read") for i in range(1, 4)]
    pool.append(FreshPost("other", "o", T + 1))
    out = rerank([], pool, reader, T + 10, 10)
    assert out[0].source == "IN_NETWORK" and out[0].reasons()[-1] == "pulled at read"
    # the followed creator's second post falls below another author's post of equal age
    assert [s.post_id for s in out] == ["big1", "other", "big2", "big3"]


def test_rerank_is_a_function_of_its_arguments():
    reader = Reader("u", T, vector=unit(1, 1))
    items = [stored(f"s{i}", f"a{i % 3}", T - i * H, novelty=0.5, interest=0.1 * i) for i in range(20)]
    pool = [FreshPost(f"f{i}", f"b{i % 4}", T + i * H, vector=unit(1, i)) for i in range(1, 30)]
    a = rerank(items, pool, reader, T + 12 * H, 25)
    b = rerank(list(reversed(items)), list(reversed(pool)), reader, T + 12 * H, 25)
    assert [(s.post_id, s.score) for s in a] == [(s.post_id, s.score) for s in b]
    assert len(a) == 25 and all(s.published_at <= T + 12 * H for s in a)


def _greedy(scores, post_ids, creators, limit):
    """The quadratic author-diversity pass the heap must equal: at each step the best remaining
    post by discounted score (ties by post id)."""
    left, placed, out = list(range(len(scores))), {}, []
    while left and len(out) < limit:
        def key(i):
            s = scores[i]
            return (-(s - abs(s) * (1.0 - R.DIVERSITY_DECAY ** placed.get(creators[i], 0))), post_ids[i])
        best = min(left, key=key)
        left.remove(best)
        out.append((best, round(-key(best)[0], 9)))
        placed[creators[best]] = placed.get(creators[best], 0) + 1
    return out


@pytest.mark.parametrize("seed", range(40))
def test_lazy_diversification_equals_the_quadratic_greedy_pass(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    # few distinct values (many ties), some negative scores, few authors
    scores = [float(x) for x in rng.choice([-0.2, 0.0, 0.1, 0.3, 0.3, 0.5, 0.9], n)]
    ids = [f"p{int(x)}" for x in rng.permutation(n)]
    creators = [f"c{int(x)}" for x in rng.integers(0, 5, n)]
    limit = int(rng.integers(1, 70))
    assert R.diversified(scores, ids, creators, limit) == _greedy(scores, ids, creators, limit)


def test_pool_affinity_matches_equal_the_per_post_functions():
    """The pool's sparse hashtag/category sums equal relevance.hashtag_match/category_match
    exactly (the read path and the ranker score the same)."""
    rng = np.random.default_rng(3)
    tags, cats = [f"t{i}" for i in range(12)], [f"c{i}" for i in range(6)]
    reader = Reader("u", T, hashtags={t: float(rng.uniform(-1, 1)) for t in tags[:8]},
                    categories={c: float(rng.uniform(-2, 2)) for c in cats[:4]})
    pool = [FreshPost(f"f{i}", "a", T + 1 + i, hashtags=tuple(rng.choice(tags, int(rng.integers(0, 6)))),
                      categories=tuple(sorted((c, float(rng.random())) for c in
                                              rng.choice(cats, int(rng.integers(0, 4)), replace=False))))
            for i in range(80)]
    out = {s.post_id: s.signals for s in rerank([], pool, reader, T + 1000, 80)}
    for p in pool:
        assert out[p.post_id]["hashtag"] == round(R.hashtag_match(reader.hashtags, p.hashtags), 6)
        assert out[p.post_id]["category"] == round(R.category_match(reader.categories, p.categories), 6)
