"""The subjects' key store (``streams/stores/keys.py``) on the real Cassandra: every key read in
one scan (``load_all``), and what the scan lets a reader conclude about a subject with none."""
from __future__ import annotations

from dataclasses import replace

from streams.stores.keys import CassandraSubjectKeys
from tests.integration.conftest import unique


def test_a_scan_caches_every_key_and_an_erased_subject_reads_as_keyless_without_a_read(pipeline):
    kept, erased, later = unique("keys-kept"), unique("keys-erased"), unique("keys-later")
    writer = CassandraSubjectKeys(pipeline)
    try:
        assert writer.ensure([kept, erased]) == 2
        key = writer.key(kept, create=False)
        writer.shred(erased)
    finally:
        writer.close()

    reader = CassandraSubjectKeys(pipeline)
    try:
        assert reader.load_all() is True
        lookups = reader.lookups
        assert reader.key(kept, create=False) == key
        assert reader.key(erased, create=False) is None
        assert reader.prefetch([kept, erased]) == 0
        assert reader.lookups == lookups  # all answered by the scan
        assert reader.ensure([later]) == 1  # a key made after the scan is still made
        assert reader.key(later, create=False) is not None and reader.lookups > lookups
    finally:
        reader.close()

    cut = CassandraSubjectKeys(pipeline)
    try:  # a scan cut short by its limit leaves the keys it did not read to point reads
        assert cut.load_all(limit=1) is False
        assert cut.key(erased, create=False) is None and cut.lookups == 1
    finally:
        cut.close()

    expired = CassandraSubjectKeys(replace(pipeline, subject_key_cache_s=0.0))
    try:  # once the cache's TTL has run out the scan is made again, here as slow as the TTL
        assert expired.load_all() is True
        assert expired.key(erased, create=False) is None and expired.lookups == 1
    finally:
        expired.close()
