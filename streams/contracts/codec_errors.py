"""The one error type of the event codecs.

It has a module of its own so the validator (:mod:`streams.contracts.validation`), the Avro body reader
(:mod:`streams.contracts.avro_body`), the single-object codec (:mod:`streams.contracts.codec`) and the Schema
Registry codec (:mod:`streams.contracts.schema_registry`) can all raise it without importing each other.
Import it from :mod:`streams.contracts.codec`.
"""
from __future__ import annotations

from typing import Optional


class CodecError(ValueError):
    """An event that cannot be encoded (it breaks its schema) or a message that cannot be decoded
    (bad header, unknown schema, truncated or malformed body, trailing bytes).

    The message is a human-readable reason, fit for a dead letter's ``reason``; ``field`` is the
    path of the offending field (``"kind"``, ``"items[2].score"``) for validation errors, else
    ``None``.
    """

    def __init__(self, message: str, *, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field
