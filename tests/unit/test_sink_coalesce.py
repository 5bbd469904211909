"""CassandraSink sends only the newest of several upserts of one row's columns in a flush."""
from __future__ import annotations

from types import SimpleNamespace

from streams.contracts.effects import Delete, Upsert
from streams.sinks.writers import CassandraSink


class FakeSession:
    """Records executed parameter lists; its schema metadata names ``feeds``' primary key."""

    keyspace = "ks"

    def __init__(self):
        table = SimpleNamespace(primary_key=[SimpleNamespace(name="user_id")])
        self.cluster = SimpleNamespace(metadata=SimpleNamespace(
            keyspaces={"ks": SimpleNamespace(tables={"user_feeds": table})}))
        self.sent: list[tuple[str, list]] = []

    def prepare(self, cql):
        return cql


def test_only_the_newest_upsert_of_a_row_is_sent(monkeypatch):
    session = FakeSession()
    sent = []
    monkeypatch.setattr("cassandra.concurrent.execute_concurrent_with_args",
                        lambda s, stmt, params, **kw: sent.append((stmt, list(params))))
    sink = CassandraSink(session)
    for ts, items in ((10, "a"), (30, "c"), (20, "b")):
        sink.add(Upsert("user_feeds", {"user_id": "u", "items": items}, ts))
    sink.add(Upsert("user_feeds", {"user_id": "v", "items": "x"}, 5))
    sink.add(Upsert("user_feeds", {"user_id": "v", "items": "y"}, 5))  # a tie: both go
    sink.add(Upsert("other", {"k": "u", "n": 1}, 1))   # no metadata: never coalesced
    sink.add(Upsert("other", {"k": "u", "n": 2}, 2))
    sink.add(Delete("user_feeds", {"user_id": "u"}, 25))
    assert sink.flush() == 6 and sink.rows_coalesced == 2
    by_table = {stmt.split()[2]: params for stmt, params in sent if stmt.startswith("INSERT")}
    assert sorted(by_table["user_feeds"]) == [("c", "u", 30), ("x", "v", 5), ("y", "v", 5)]
    assert len(by_table["other"]) == 2
    # after a flush the next one starts afresh
    sink.add(Upsert("user_feeds", {"user_id": "u", "items": "d"}, 1))
    assert sink.flush() == 1
