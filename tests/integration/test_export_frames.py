"""An export of the topics as the demo writes them (Stack Exchange records, published with the
Publisher) opens in pandas and in polars with the documented columns (every schema field, then
``_topic``, ``_partition``, ``_offset``, ``_timestamp_ms``: replay/export.py, docs/backbone.md),
one row per published event, and the types the export maps the Avro schema to."""
from __future__ import annotations

import time
from collections import Counter

import pandas as pd
import polars as pl
import pytest

from replay.export import export_topic
from streams.bench.ranking import TOPIC_OF
from streams.contracts.schemas import default_catalog
from streams.contracts.topics import topic_spec
from streams.demo.sources.stackexchange import SAMPLE_DUMP, iter_events_in_time_order, load_dump
from streams.producer import Publisher

POSITION = ["_topic", "_partition", "_offset", "_timestamp_ms"]


@pytest.fixture(scope="module")
def exported(pipeline, tmp_path_factory) -> dict:
    """``{"published": {topic: [record]}, "paths": {topic: parquet path}}``: 400 demo events
    (from the sample's 2,000th on, so no other test publishes them) exported from the moment
    before they were published (``--from``)."""
    history = list(iter_events_in_time_order(load_dump(SAMPLE_DUMP)))[2_000:2_400]
    published: dict[str, list[dict]] = {t: [] for t in TOPIC_OF.values()}
    start_ms = int(time.time() * 1000) - 1
    with Publisher(pipeline, producer_name="demo.stackexchange") as pub:
        for event_type, record in history:
            pub.publish(TOPIC_OF[event_type], record)
            published[TOPIC_OF[event_type]].append(record)
    out = tmp_path_factory.mktemp("frames")
    paths = {}
    for topic in published:
        paths[topic] = out / f"{topic}.parquet"
        export_topic(pipeline, topic, paths[topic], start_ms=start_ms)
    return {"published": published, "paths": paths}


def _columns(topic: str) -> list[str]:
    schema = default_catalog().current(topic_spec(topic).schema).schema
    return [f["name"] for f in schema["fields"]] + POSITION


def test_every_topic_opens_in_pandas_with_the_documented_columns_and_rows(exported):
    assert all(exported["published"].values())  # the slice has events of every topic
    for topic, records in exported["published"].items():
        df = pd.read_parquet(exported["paths"][topic])
        assert list(df.columns) == _columns(topic), topic
        assert len(df) == len(records)
        assert Counter(df["event_id"]) == Counter(r["event_id"] for r in records)
        assert set(df["_topic"]) == {topic}
        assert str(df["event_time"].dtype) == "datetime64[ms, UTC]"
        assert (df["_partition"].dtype, df["_offset"].dtype, df["_timestamp_ms"].dtype) == \
            ("int32", "int64", "int64")
        assert pd.api.types.is_string_dtype(df["event_id"]) and pd.api.types.is_string_dtype(df["producer"])
        times = dict(zip(df["event_id"], df["event_time"].astype("int64")))
        assert all(times[r["event_id"]] == r["event_time"] for r in records)


def test_uploads_open_in_polars_with_the_contract_types(exported):
    records = {r["post_id"]: r for r in exported["published"]["uploads"]}
    df = pl.read_parquet(exported["paths"]["uploads"])
    assert df.columns == _columns("uploads") and df.height == len(records)
    assert df.schema["event_time"] == pl.Datetime("ms", "UTC")
    assert df.schema["hashtags"] == pl.List(pl.String)
    assert (df.schema["post_id"], df.schema["kind"], df.schema["title"]) == (pl.String,) * 3
    assert (df.schema["width"], df.schema["size_bytes"]) == (pl.Int32, pl.Int64)
    assert (df.schema["_partition"], df.schema["_offset"], df.schema["_timestamp_ms"]) == \
        (pl.Int32, pl.Int64, pl.Int64)
    for row in df.select("post_id", "hashtags", "title", "parent_post_id", "creator_id").iter_rows(named=True):
        want = records[row["post_id"]]
        assert row == {k: want[k] for k in row}
    # an analyst's first question: who posts most
    top = df.group_by("creator_id").len().sort("len", descending=True).row(0)
    assert top[1] == Counter(r["creator_id"] for r in records.values()).most_common(1)[0][1]


def test_interactions_and_signups_open_in_polars(exported):
    for topic in ("interactions", "signups", "follows"):
        df = pl.read_parquet(exported["paths"][topic])
        assert df.columns == _columns(topic) and df.height == len(exported["published"][topic])
        assert df.schema["event_time"] == pl.Datetime("ms", "UTC")
        assert df["_topic"].unique().to_list() == [topic]
    types = pl.read_parquet(exported["paths"]["interactions"])["type"]
    assert Counter(types.to_list()) == Counter(r["type"] for r in exported["published"]["interactions"])
