"""Operations: what ``pulse dashboard`` and ``/metrics`` show. Read-side code (never an agent):
:mod:`~streams.ops.scrape` reads the workers' ``/metrics``, :mod:`~streams.ops.lag` the consumer
groups' lag from Kafka, :mod:`~streams.ops.sources` the views and the topics no view holds,
:mod:`~streams.ops.snapshot` turns them into one snapshot per second (pure),
:mod:`~streams.ops.collector` keeps ~15 minutes of them, and :mod:`~streams.ops.exposition`
exports the latest at ``/metrics``. See docs/operations.md."""
