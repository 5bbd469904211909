"""streams.stores.cassandra.named_rows: the driver's named-tuple rows with one type per column list."""
from __future__ import annotations

from cassandra.query import named_tuple_factory

from streams.stores.cassandra import named_rows


def test_rows_equal_the_drivers_and_share_one_type_per_column_list():
    rows = [("u1", b"\x01", 3), ("u2", None, 4)]
    got = named_rows(["user_id", "feed", "n"], rows)
    want = named_tuple_factory(["user_id", "feed", "n"], rows)
    assert got == want and [r._asdict() for r in got] == [r._asdict() for r in want]
    assert got[1].feed is None and got[0].n == 3
    again = named_rows(["user_id", "feed", "n"], [("u3", b"", 5)])
    assert type(again[0]) is type(got[0])
    assert type(named_rows(["user_id"], [("u4",)])[0]) is not type(got[0])


def test_names_that_are_not_identifiers_get_the_drivers_renaming():
    rows = [(7,)]
    assert named_rows(["system.count(*)"], rows) == named_tuple_factory(["system.count(*)"], rows)
    assert named_rows(["system.count(*)"], rows)[0][0] == 7
