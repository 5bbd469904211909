"""apply_schema adds the columns a newer schema.cql declares to tables an older version made."""
from streams.stores.cassandra import apply_schema, connect

from tests.integration.conftest import unique


def test_missing_columns_are_added_to_an_existing_table(pipeline):
    ks = unique("upgrade").replace("-", "_")
    settings = pipeline.with_(cassandra_keyspace=ks)
    cluster, s = connect(settings)
    try:
        s.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', "
                  f"'replication_factor': 1}}")
        s.execute(f"CREATE TABLE {ks}.review_tasks (task_id text PRIMARY KEY, post_id text)")
        apply_schema(settings, s)
        cols = {r.column_name: r.type for r in s.execute(
            "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = %s AND "
            "table_name = 'review_tasks'", (ks,))}
        assert cols["queue"] == "text" and cols["scores"] == "frozen<map<text, double>>"
        apply_schema(settings, s)  # idempotent
    finally:
        s.execute(f"DROP KEYSPACE IF EXISTS {ks}")
        cluster.shutdown()
