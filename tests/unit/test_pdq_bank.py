"""PDQBank (multi-index hashing) against the brute-force scan: same hits on random banks with
planted near-duplicates, upsert/remove semantics, input errors, and Meta's PDQ needles/haystack."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.fingerprints import hamming
from models.fingerprints.bank import PDQBank, brute_force_search

PDQ_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "threatexchange" / "pdq"


def flip(h: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``h`` ((32,) uint8) with ``k`` distinct random bits flipped: Hamming distance exactly k."""
    bits = np.unpackbits(h)
    bits[rng.choice(256, size=k, replace=False)] ^= 1
    return np.packbits(bits)


def planted_bank(n_random: int, n_bases: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 32) uint8`` random hashes plus, per base, copies at every distance 0..40; the bases."""
    rng = np.random.default_rng(seed)
    bases = rng.integers(0, 256, size=(n_bases, 32), dtype=np.uint8)
    planted = [flip(b, k, rng) for b in bases for k in range(41)]
    noise = rng.integers(0, 256, size=(n_random, 32), dtype=np.uint8)
    return np.concatenate([noise, np.stack(planted)]), bases


def expected(rows: np.ndarray, ids: list[str], query: bytes, radius: int) -> list[tuple[str, int]]:
    hit_rows, dist = brute_force_search(rows, query, radius)
    return sorted(((ids[r], int(d)) for r, d in zip(hit_rows, dist)), key=lambda h: (h[1], h[0]))


@pytest.mark.parametrize("tail_rows", [0, 10**9])  # fully indexed / fully scanned tail
def test_search_equals_brute_force_on_planted_near_duplicates(tail_rows: int) -> None:
    rows, bases = planted_bank(20_000, 10, seed=1)
    ids = [f"h{i}" for i in range(len(rows))]
    bank = PDQBank(tail_rows=tail_rows)
    bank.add(ids, rows)
    rng = np.random.default_rng(2)
    queries = [flip(b, k, rng).tobytes() for b in bases for k in (0, 3, 9)]
    queries += [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(20)]
    found_planted = 0
    for q in queries:
        for radius in (0, 15, 31, 40, 64):
            got = bank.search(q, radius)
            assert got == expected(rows, ids, q, radius)
            assert all(hamming(q, rows[int(i[1:])].tobytes()) == d for i, d in got)
        found_planted += len(bank.search(q))
    assert found_planted > 100  # planted copies within 31 were there to be found


def test_distance_boundary_is_inclusive() -> None:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, 32, dtype=np.uint8)
    bank = PDQBank()
    bank.add([f"d{k}" for k in range(41)], np.stack([flip(base, k, rng) for k in range(41)]))
    hits = bank.search(base.tobytes(), radius=31)
    assert [d for _, d in hits] == list(range(32))
    assert [i for i, _ in hits] == [f"d{k}" for k in range(32)]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 60),
    radius=st.integers(0, 70),
    tail_rows=st.sampled_from([0, 3, 1000]),
)
def test_small_banks_match_brute_force(seed: int, n: int, radius: int, tail_rows: int) -> None:
    rng = np.random.default_rng(seed)
    query = rng.integers(0, 256, 32, dtype=np.uint8)
    rows = np.stack([flip(query, int(k), rng) for k in rng.integers(0, 48, n)] or [query])[:n]
    rows = rows.reshape(n, 32)
    ids = [f"id{i:02d}" for i in range(n)]
    bank = PDQBank(tail_rows=tail_rows)
    bank.add(ids, rows)
    assert bank.search(query.tobytes(), radius) == expected(rows, ids, query.tobytes(), radius)


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "remove", "search"]),
            st.lists(st.integers(0, 12), min_size=1, max_size=6),
            st.integers(0, 2**32 - 1),
        ),
        max_size=25,
    ),
    tail_rows=st.sampled_from([0, 2, 1000]),
)
def test_upserts_and_removes_behave_like_a_dict(ops, tail_rows: int) -> None:
    """Any interleaving of add/remove/search gives the hits a plain ``{id: hash}`` would."""
    base = np.random.default_rng(0).integers(0, 256, 32, dtype=np.uint8)
    bank, model = PDQBank(tail_rows=tail_rows), {}
    for op, keys, seed in ops:
        rng = np.random.default_rng(seed)
        ids = [f"k{k}" for k in keys]
        if op == "add":
            hashes = [flip(base, int(rng.integers(0, 40)), rng).tobytes() for _ in ids]
            bank.add(ids, hashes)
            model.update(zip(ids, hashes))
        elif op == "remove":
            bank.remove(ids)
            for i in ids:
                model.pop(i, None)
        else:
            q = flip(base, int(rng.integers(0, 10)), rng).tobytes()
            want = sorted(((i, hamming(q, h)) for i, h in model.items() if hamming(q, h) <= 31),
                          key=lambda hit: (hit[1], hit[0]))
            assert bank.search(q) == want
        assert len(bank) == len(model)


def test_add_is_idempotent_and_replaces_the_hash() -> None:
    a, b = bytes(32), bytes([0xFF]) * 32
    bank = PDQBank()
    bank.add(["x", "y"], [a, b])
    bank.add(["x", "y"], [a, b])
    assert len(bank) == 2
    assert bank.search(a, 0) == [("x", 0)]
    bank.add(["x"], [b])  # re-registering x moves it
    assert len(bank) == 2
    assert bank.search(a, 31) == []
    assert bank.search(b, 0) == [("x", 0), ("y", 0)]
    bank.add(["z", "z"], [a, b])  # within one batch the last hash wins
    assert bank.search(b, 0) == [("x", 0), ("y", 0), ("z", 0)]


def test_remove() -> None:
    bank = PDQBank()
    bank.add(["x", "y"], [bytes(32), bytes(32)])
    bank.remove(["x", "missing"])
    assert len(bank) == 1 and "x" not in bank and "y" in bank
    assert bank.search(bytes(32)) == [("y", 0)]
    bank.remove(["y"])
    assert bank.search(bytes(32)) == [] and len(bank) == 0
    bank.add(["x"], [bytes(32)])  # a removed id can come back
    assert bank.search(bytes(32)) == [("x", 0)]


def test_empty_bank() -> None:
    bank = PDQBank()
    assert len(bank) == 0
    assert bank.search(bytes(32)) == []
    assert bank.search(bytes(32), radius=256) == []
    assert bank.search_many([bytes(32), bytes([1]) * 32]) == [[], []]
    bank.add([], np.zeros((0, 32), np.uint8))
    assert len(bank) == 0


def test_search_many_accepts_bytes_and_arrays() -> None:
    rows = np.random.default_rng(5).integers(0, 256, (50, 32), dtype=np.uint8)
    bank = PDQBank()
    bank.add([str(i) for i in range(50)], rows)
    assert bank.search_many(rows[:3]) == [[("0", 0)], [("1", 0)], [("2", 0)]]
    assert bank.search_many([r.tobytes() for r in rows[:3]]) == bank.search_many(rows[:3])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: b.search(bytes(31)), "query is 31 bytes; a PDQ hash is 32 bytes"),
        (lambda b: b.search("00" * 32), "use bytes.fromhex"),
        (lambda b: b.search(bytes(32), radius=-1), "radius must be a non-negative int"),
        (lambda b: b.add(["a"], [bytes(33)]), "hash 0 is 33 bytes; a PDQ hash is 32 bytes"),
        (lambda b: b.add(["a", "b"], [bytes(32)]), "2 ids for 1 hashes"),
        (lambda b: b.add(["a"], np.zeros((1, 256), np.uint8)), r"\(n, 32\) uint8 array"),
        (lambda b: b.add([1], [bytes(32)]), "ids are str"),
    ],
)
def test_bad_input_raises_value_error(call, message: str) -> None:
    bank = PDQBank()
    with pytest.raises(ValueError, match=message):
        call(bank)
    assert len(bank) == 0


def test_brute_force_search_sorts_by_distance_then_row() -> None:
    rows = np.zeros((4, 32), np.uint8)
    rows[0, 0], rows[2, 31] = 0b11, 0b1
    hit_rows, dist = brute_force_search(rows, bytes(32), 1)
    assert hit_rows.tolist() == [1, 3, 2] and dist.tolist() == [0, 0, 1]


def _read_hex(path: Path) -> list[bytes]:
    lines = path.read_text().splitlines()
    return [bytes.fromhex(line.split()[0]) for line in lines if line.strip()]


@pytest.mark.skipif(
    not (PDQ_DATA / "needles.txt").is_file(),
    reason=f"Meta's PDQ needles/haystack not found at {PDQ_DATA} (../shared/data)",
)
def test_meta_needles_are_found_in_haystack() -> None:
    """ThreatExchange ``pdq/data``: one 64-hex-digit PDQ hash a line; every needle has near
    copies in the haystack (distance 0-4 measured), and the bank finds all of them."""
    haystack, needles = _read_hex(PDQ_DATA / "haystack.txt"), _read_hex(PDQ_DATA / "needles.txt")
    bank = PDQBank()
    bank.add([f"hay{i}" for i in range(len(haystack))], haystack)
    ids = [f"hay{i}" for i in range(len(haystack))]
    rows = np.frombuffer(b"".join(haystack), np.uint8).reshape(-1, 32)
    results = bank.search_many(needles, radius=31)
    for needle, hits in zip(needles, results, strict=True):
        assert hits, f"no match for needle {needle.hex()}"
        assert hits[0][1] <= 4
        assert hits == expected(rows, ids, needle, 31)
