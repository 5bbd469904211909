"""The subjects' key store (``streams/stores/keys.py``) on the real Cassandra: every key read in
one scan (``load_all``), and a subject the scan did not see still read, whether erased or keyed
after the scan."""
from __future__ import annotations

from dataclasses import replace

from streams.stores.keys import CassandraSubjectKeys
from tests.integration.conftest import unique


def test_a_scan_caches_every_key_and_a_subject_it_did_not_see_is_still_read(pipeline):
    kept, erased, later, newcomer = (unique(f"keys-{n}") for n in ("kept", "erased", "later", "new"))
    writer = CassandraSubjectKeys(pipeline)
    try:
        assert writer.ensure([kept, erased]) == 2
        key = writer.key(kept, create=False)
        writer.shred(erased)

        reader = CassandraSubjectKeys(pipeline)
        try:
            assert reader.load_all() is True
            lookups = reader.lookups
            assert reader.key(kept, create=False) == key
            assert reader.prefetch([kept]) == 0 and reader.lookups == lookups  # answered by the scan
            assert reader.key(erased, create=False) is None and reader.lookups == lookups + 1
            # a producer still writing keys a new subject after the scan: its events are read
            # with its key, not taken for an erased subject's
            new_key = writer.key(newcomer, create=True)
            assert reader.prefetch([kept, newcomer]) == 1 and reader.key(newcomer, create=False) == new_key
            assert reader.ensure([later]) == 1  # a key made by the reader after the scan
            assert reader.key(later, create=False) is not None
        finally:
            reader.close()
    finally:
        writer.close()

    cut = CassandraSubjectKeys(pipeline)
    try:  # a scan cut short by its limit leaves the keys it did not read to point reads
        assert cut.load_all(limit=1) is False
        assert cut.key(erased, create=False) is None and cut.lookups == 1
    finally:
        cut.close()

    expired = CassandraSubjectKeys(replace(pipeline, subject_key_cache_s=0.0))
    try:  # keys cached for no time: a scan is not made again (it cannot take under a tenth of
        # the TTL), and every key is read
        assert expired.load_all() is True
        assert expired.key(kept, create=False) == key and expired.lookups == 1
    finally:
        expired.close()
