"""Benchmarks behind `pulse bench ...`: each returns one JSON-able dict with its figures and a
baseline measured in the same run (a ratio > 1 means Pulse is faster than the baseline)."""
