"""The read endpoints' orjson body says what FastAPI's own serialization said."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
from fastapi.encoders import jsonable_encoder

from streams.api.responses import JSONBody


def test_the_body_equals_fastapis_serialization_for_the_types_the_views_return():
    value = {"naive": datetime(2026, 12, 5, 1, 2, 3, 456000), "aware": datetime(2026, 12, 5, tzinfo=timezone.utc),
             "f": np.float64(0.25), "i": np.int64(7), "list": [1, "a", None, True], "tuple": (1, 2),
             "nested": {"signals": {"interest": 0.8}}, "tags": {"b", "a"}, "d": Decimal("1.5")}
    ours = json.loads(JSONBody(value).body)
    fastapi = json.loads(json.dumps(jsonable_encoder({**value, "f": 0.25, "i": 7})))
    assert ours == {**fastapi, "tags": ["a", "b"]}  # sets sorted (FastAPI keeps set order)
    assert JSONBody(value).headers["content-type"] == "application/json"


def test_non_string_keys_and_arrays_are_written():
    body = json.loads(JSONBody({1: np.arange(3, dtype=np.float32), "x": float("nan")}).body)
    assert body == {"1": [0.0, 1.0, 2.0], "x": None}  # NaN is not JSON: null
