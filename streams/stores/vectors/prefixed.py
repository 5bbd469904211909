"""A view of a vector index whose collection names all carry a prefix, so a rebuild writes fresh
collections (``<keyspace>__content``) beside the live ones in the same engine or server."""
from __future__ import annotations

from dataclasses import replace
from typing import Any


def collection_prefix(keyspace: str, base_keyspace: str) -> str:
    """The collection-name prefix that goes with a views keyspace: none for the base keyspace
    (``PULSE_CASSANDRA_KEYSPACE``), ``"<keyspace>__"`` for a rebuilt one."""
    return "" if keyspace == base_keyspace else f"{keyspace}__"


class PrefixedIndex:
    """Delegates every :class:`~streams.stores.vectors.base.VectorIndex` call to ``index`` with
    ``prefix`` prepended to the collection name (``ensure_collection`` renames the spec)."""

    _BY_NAME = ("upsert", "delete", "set_payload", "payloads", "get", "dims", "count", "search",
                "search_batch", "drop_collection")

    def __init__(self, index: Any, prefix: str):
        self.index = index
        self.prefix = prefix

    def ensure_collection(self, spec: Any) -> None:
        self.index.ensure_collection(replace(spec, name=self.prefix + spec.name))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.index, name)
        if name not in self._BY_NAME:
            return attr

        def call(collection: str, *args: Any, **kwargs: Any) -> Any:
            return attr(self.prefix + collection, *args, **kwargs)

        return call

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> "PrefixedIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
