"""Replay: reading topics back by offset or time, rebuilding views through the live code path,
and exporting topics to Parquet for analysts."""
