"""Pulse's runtime: settings, event contracts and codec, topics, servers, the Faust app and
runtime, sinks, the vector index, the publisher SDK, the CLI, the demo and the benchmarks."""
