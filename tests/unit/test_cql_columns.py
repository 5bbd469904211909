"""declared_columns parses every table of schema.cql (what apply_schema adds to older tables)."""
from streams.stores.cassandra import cql_statements, declared_columns


def test_every_table_parses_with_its_keys_and_types():
    tables = dict(filter(None, (declared_columns(s) for s in cql_statements())))
    assert tables["posts_by_creator"]["post_id"] == "text"  # not the clustering order's "ASC"
    assert tables["review_tasks"]["scores"] == "frozen<map<text, double>>"
    assert tables["users"]["user_id"] == "text"
    assert all("PRIMARY" not in c and "ASC" not in t and "DESC" not in t
               for cols in tables.values() for c, t in cols.items())
    assert declared_columns("CREATE KEYSPACE x") is None
