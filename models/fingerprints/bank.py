"""A searchable bank of 256-bit PDQ hashes: exact Hamming-radius search with multi-index hashing.

Multi-index hashing (MIH; Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with
Multi-Index Hashing", CVPR 2012; the index behind Meta's PDQ tooling in github
facebook/ThreatExchange ``pdq/cpp/index/mih.h``) splits each hash into ``m`` disjoint substrings
and indexes every substring separately.

Pigeonhole bound
    If ``hamming(h, q) <= r`` then, since the ``m`` substring distances add up to at most ``r``,
    at least one substring of ``h`` is within ``floor(r / m)`` bits of the same substring of
    ``q``. Probing, for every substring, each key within ``floor(r / m)`` bits of the query's key
    therefore reaches every hash within ``r``: the search is exact (recall 1.0). Candidates are
    then verified with a full 256-bit popcount.
Parameters
    ``m = 16`` substrings of 16 bits. For PDQ's usual match radius 31, ``floor(31 / 16) = 1``, so a
    query probes ``1 + 16 = 17`` keys per substring, 272 buckets in all. 16-bit keys allow direct
    addressing: each substring's index is a CSR table (``offsets`` of 65,537 positions into a
    posting list of row ids sorted by key), so a probe is two array reads, no hashing and no
    ``searchsorted``. On uniform hashes a bucket holds ``n / 65536`` rows (15 at 1,000,000), so
    a radius-31 query verifies about ``272 * n / 65536`` candidates (about 4,200 at 1,000,000)
    instead of ``n``. Norouzi et al. advise substrings of about ``log2(n)`` bits (20 at 1M);
    16 keeps the keys aligned to ``uint16`` and the tables small (8.4 MB of offsets).
    Radii up to 47 probe ``floor(r / 16) <= 2`` (137 keys per substring); wider radii would
    verify most of the bank, so they fall back to a brute-force scan (still exact).

Storage: hashes in one growable contiguous ``(capacity, 4) uint64`` array (32 bytes a hash);
the index holds ``16`` ``uint32`` row ids per hash (64 bytes a hash). Rows added since the index
was last built (at most ``tail_rows``) are scanned brute force; removed and replaced rows are
tombstoned and dropped when more than a quarter of the rows are dead.

Example
-------
>>> bank = PDQBank()
>>> bank.add(["a", "b"], [bytes(32), bytes([255]) * 32])
>>> bank.search(bytes([1]) + bytes(31), radius=31)
[('a', 1)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import combinations

import numpy as np

PDQ_BYTES = 32
"""A PDQ hash is 256 bits (Meta's PDQ specification, ``pdq/README.md``)."""
SUBSTRINGS = 16
SUBSTRING_BITS = 16
_BUCKETS = 1 << SUBSTRING_BITS
MAX_PROBES_PER_SUBSTRING = 512
"""Above this many keys per substring (radius 48 and up) a search scans the bank instead."""
TAIL_ROWS = 32_768
"""Rows added since the last index build that a search scans brute force (about 1 ms) before the
index is rebuilt."""

HashesLike = np.ndarray | Sequence[bytes]


@lru_cache(maxsize=None)
def _probe_masks(bits: int) -> np.ndarray:
    """XOR masks of ``SUBSTRING_BITS``-bit keys with at most ``bits`` bits set: ``(P,) uint16``."""
    masks = [0]
    for k in range(1, bits + 1):
        masks += [sum(1 << b for b in c) for c in combinations(range(SUBSTRING_BITS), k)]
    return np.array(masks, dtype=np.uint16)


def as_hash_rows(hashes: HashesLike) -> np.ndarray:
    """PDQ hashes as ``(n, 4) uint64`` rows (the bank's layout; bytes order kept).

    ``hashes`` is an ``(n, 32) uint8`` array or a sequence of 32-byte strings.

    Raises
    ------
    ValueError : a hash is not 32 bytes, or the array is not ``(n, 32) uint8``.
    """
    if isinstance(hashes, np.ndarray):
        if hashes.dtype != np.uint8 or hashes.ndim != 2 or hashes.shape[1] != PDQ_BYTES:
            raise ValueError(
                f"PDQ hashes must be an (n, {PDQ_BYTES}) uint8 array; "
                f"got shape {hashes.shape} dtype {hashes.dtype}"
            )
        return np.ascontiguousarray(hashes).view(np.uint64)
    parts = []
    for i, h in enumerate(hashes):
        if not isinstance(h, (bytes, bytearray, memoryview)):
            raise ValueError(f"hash {i} is a {type(h).__name__}; a PDQ hash is {PDQ_BYTES} bytes")
        if len(h) != PDQ_BYTES:
            raise ValueError(
                f"hash {i} is {len(h)} bytes; a PDQ hash is {PDQ_BYTES} bytes (256 bits)"
            )
        parts.append(bytes(h))
    return np.frombuffer(b"".join(parts), dtype=np.uint64).reshape(-1, 4).copy()


def _as_query(query: bytes | np.ndarray) -> np.ndarray:
    if isinstance(query, np.ndarray) and query.dtype == np.uint8 and query.shape == (PDQ_BYTES,):
        return np.ascontiguousarray(query).view(np.uint64)
    if not isinstance(query, (bytes, bytearray, memoryview)):
        raise ValueError(
            f"a query is {PDQ_BYTES} bytes (use bytes.fromhex for hex); got {type(query).__name__}"
        )
    if len(query) != PDQ_BYTES:
        raise ValueError(f"query is {len(query)} bytes; a PDQ hash is {PDQ_BYTES} bytes (256 bits)")
    return np.frombuffer(bytes(query), dtype=np.uint64)


def _check_radius(radius: int) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative int (bits); got {radius!r}")
    return int(radius)


def brute_force_search(
    bank_array: np.ndarray, query: bytes | np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline: Hamming distance from ``query`` to every row, with ``np.bitwise_count``.

    ``bank_array`` is ``(n, 32) uint8`` or ``(n, 4) uint64``. Returns ``(rows, distances)``, both
    ``(k,) int64``, for every row within ``radius`` bits, sorted by distance then row.
    """
    rows = bank_array if bank_array.dtype == np.uint64 else as_hash_rows(bank_array)
    q = _as_query(query)
    d = np.bitwise_count(rows ^ q).sum(axis=1, dtype=np.int64)
    hit = np.flatnonzero(d <= _check_radius(radius))
    order = np.lexsort((hit, d[hit]))
    return hit[order].astype(np.int64), d[hit][order]


class PDQBank:
    """Registered PDQ hashes keyed by id, searched exactly by Hamming radius (see module doc).

    ``add`` is an upsert per id, so replaying registrations gives the same bank. Not thread-safe.
    """

    def __init__(self, *, tail_rows: int = TAIL_ROWS) -> None:
        self._tail_rows = tail_rows
        self._hashes = np.zeros((0, 4), dtype=np.uint64)  # (capacity, 4); rows [0, _n) used
        self._live = np.zeros(0, dtype=bool)
        self._n = 0
        self._ids: list[str | None] = []  # row -> id; None once tombstoned
        self._row_of: dict[str, int] = {}
        self._indexed = 0  # rows [0, _indexed) are in the index
        self._offsets = np.zeros((SUBSTRINGS, _BUCKETS + 1), dtype=np.int64)
        self._postings = np.zeros(0, dtype=np.uint32)

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._row_of

    @property
    def nbytes(self) -> int:
        """Bytes held by the hash array and the index (ids and their dict not counted)."""
        index = self._postings.nbytes + self._offsets.nbytes
        return self._hashes.nbytes + self._live.nbytes + index

    def add(self, ids: Sequence[str], hashes: HashesLike) -> None:
        """Register ``hashes[i]`` under ``ids[i]``; an id already present gets the new hash.

        Raises
        ------
        ValueError : lengths differ, a hash is not 32 bytes, or an id is not a ``str``.
        """
        rows = as_hash_rows(hashes)
        ids = list(ids)
        if len(ids) != len(rows):
            raise ValueError(f"{len(ids)} ids for {len(rows)} hashes")
        last = {}
        for i, id_ in enumerate(ids):
            if not isinstance(id_, str):
                raise ValueError(f"id {i} is a {type(id_).__name__}; ids are str")
            last[id_] = i  # a batch that repeats an id keeps its last hash
        keep = []
        for id_, i in last.items():
            old = self._row_of.get(id_)
            if old is not None:
                if np.array_equal(self._hashes[old], rows[i]):
                    continue
                self._tombstone(old)
            keep.append(i)
        if not keep:
            return
        new = rows[np.array(keep)] if len(keep) != len(rows) else rows
        self._reserve(len(new))
        start = self._n
        self._hashes[start : start + len(new)] = new
        self._live[start : start + len(new)] = True
        self._n += len(new)
        for offset, i in enumerate(keep):
            self._ids.append(ids[i])
            self._row_of[ids[i]] = start + offset

    def remove(self, ids: Iterable[str]) -> None:
        """Unregister ``ids``; ids not present are ignored."""
        for id_ in ids:
            row = self._row_of.pop(id_, None)
            if row is not None:
                self._tombstone(row, drop_id=False)

    def search(self, query: bytes | np.ndarray, radius: int = 31) -> list[tuple[str, int]]:
        """Every registered ``(id, distance)`` within ``radius`` bits of ``query`` (32 bytes),
        sorted by Hamming distance then id. Exact: recall 1.0 against ``brute_force_search``.

        Raises
        ------
        ValueError : the query is not 32 bytes, or radius is not a non-negative int.
        """
        q = _as_query(query)
        radius = _check_radius(radius)
        self.build_index(force=False)
        rows, dist = self._search_rows(q, radius)
        hits = [(self._ids[r], int(d)) for r, d in zip(rows.tolist(), dist.tolist(), strict=True)]
        hits.sort(key=lambda hit: (hit[1], hit[0]))
        return hits  # type: ignore[return-value]

    def search_many(
        self, queries: Iterable[bytes] | np.ndarray, radius: int = 31
    ) -> list[list[tuple[str, int]]]:
        """``search`` for each query (a sequence of 32-byte strings or ``(k, 32) uint8``)."""
        return [self.search(q, radius) for q in queries]

    def build_index(self, *, force: bool = True) -> None:
        """(Re)build the substring tables now; ``search`` does it lazily once the rows added since
        the last build exceed ``tail_rows``. Also drops tombstoned rows when over a quarter."""
        dead = self._n - len(self._row_of)
        if dead and dead * 4 > self._n:
            self._compact()
        elif not force and self._n - self._indexed <= self._tail_rows:
            return
        n = self._n
        keys = self._hashes[:n].view(np.uint16)  # (n, 16): substring j is keys[:, j]
        postings = np.empty((SUBSTRINGS, n), dtype=np.uint32)
        offsets = np.empty((SUBSTRINGS, _BUCKETS + 1), dtype=np.int64)
        offsets[:, 0] = 0
        for j in range(SUBSTRINGS):
            k = np.ascontiguousarray(keys[:, j])
            postings[j] = np.argsort(k, kind="stable")  # radix sort for uint16
            np.cumsum(np.bincount(k, minlength=_BUCKETS), out=offsets[j, 1:])
            offsets[j] += j * n
        self._postings = postings.reshape(-1)
        self._offsets = offsets
        self._indexed = n

    # ---- internals -------------------------------------------------------------------------

    def _search_rows(self, q: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        masks = _probe_masks(radius // SUBSTRINGS) if radius < 48 else None
        if masks is None or len(masks) > MAX_PROBES_PER_SUBSTRING:
            return self._scan(q, radius, 0, self._n)
        keys = (q.view(np.uint16)[:, None] ^ masks[None, :]).astype(np.int64)  # (16, P)
        sub = np.arange(SUBSTRINGS)[:, None]
        starts = self._offsets[sub, keys].ravel()
        lengths = self._offsets[sub, keys + 1].ravel() - starts
        nonempty = lengths > 0
        starts, lengths = starts[nonempty], lengths[nonempty]
        ends = np.cumsum(lengths)
        # concatenated ranges [start, start + length) without a Python loop
        total = int(ends[-1]) if len(ends) else 0
        positions = np.arange(total) + np.repeat(starts - ends + lengths, lengths)
        cand = self._postings[positions]
        d = np.bitwise_count(self._hashes[cand] ^ q).sum(axis=1, dtype=np.int64)
        ok = (d <= radius) & self._live[cand]
        cand, first = np.unique(cand[ok], return_index=True)
        rows, dist = cand.astype(np.int64), d[ok][first]
        if self._indexed < self._n:
            tail_rows, tail_dist = self._scan(q, radius, self._indexed, self._n)
            rows, dist = np.concatenate([rows, tail_rows]), np.concatenate([dist, tail_dist])
        return rows, dist

    def _scan(self, q: np.ndarray, radius: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        d = np.bitwise_count(self._hashes[lo:hi] ^ q).sum(axis=1, dtype=np.int64)
        hit = np.flatnonzero((d <= radius) & self._live[lo:hi])
        return hit + lo, d[hit]

    def _tombstone(self, row: int, *, drop_id: bool = True) -> None:
        self._live[row] = False
        if drop_id:
            self._row_of.pop(self._ids[row], None)  # type: ignore[arg-type]
        self._ids[row] = None

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        if need <= len(self._hashes):
            return
        cap = max(need, 2 * len(self._hashes), 1024)
        hashes = np.zeros((cap, 4), dtype=np.uint64)
        hashes[: self._n] = self._hashes[: self._n]
        live = np.zeros(cap, dtype=bool)
        live[: self._n] = self._live[: self._n]
        self._hashes, self._live = hashes, live

    def _compact(self) -> None:
        keep = np.flatnonzero(self._live[: self._n])
        self._hashes[: len(keep)] = self._hashes[keep]
        self._live[:] = False
        self._live[: len(keep)] = True
        self._ids = [self._ids[r] for r in keep.tolist()]
        self._row_of = {id_: r for r, id_ in enumerate(self._ids)}  # type: ignore[misc]
        self._n = len(keep)
        self._indexed = 0
