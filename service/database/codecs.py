"""How the log's binary columns hold a request's rows, decision keys and confidences: compact, and readable one row
at a time without parsing the rest (`schema.py` says which column holds which)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..classifiers import DecisionKeys

COMPACT_KEYS = 16  # more keys than this (a model of many classes): a request stores only the keys it used
FLOAT_INPUTS = b"f8"  # then the rows' values as little-endian float64, row after row
JSON_INPUTS = b"js"  # then the rows as a JSON list of lists (strings of categorical features among the numbers)
# a logged prediction's labels or path in one cell of the CSV export, as `python -m models train` reads them back
CSV_LIST_SEPARATOR = {"labels": "|", "path": "/"}


def encode_inputs(X: Any) -> bytes:
    """A request's validated rows as stored: numbers as raw float64 (no formatting, half the size of JSON), rows
    holding strings as JSON."""
    values = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
    if values.dtype.kind in "fiub":
        return FLOAT_INPUTS + np.ascontiguousarray(values, dtype="<f8").tobytes()
    return JSON_INPUTS + orjson.dumps(values.tolist())


def decode_inputs(stored: bytes, rows: int) -> list[list[Any]]:
    """The rows of `encode_inputs`; a missing value (NaN) is None."""
    if stored[:2] == FLOAT_INPUTS:
        values = np.frombuffer(stored, dtype="<f8", offset=2).reshape(rows, -1)
        return [[None if v != v else v for v in row] for row in values.tolist()]
    return [[None if isinstance(v, float) and v != v else v for v in row] for row in orjson.loads(stored[2:])]


def encode_keys(decisions: DecisionKeys) -> bytes:
    """One request's decision keys, readable one row at a time: each row's index into the keys as a little-endian
    uint32 (row i is bytes 4i to 4i + 4), then the JSON list of the keys. A model of many classes stores only the
    keys the request used (its rows' few of a thousand classes)."""
    keys, codes = decisions.keys, decisions.codes
    if len(keys) > COMPACT_KEYS:
        used = list(dict.fromkeys(codes.tolist()))  # a dict, not numpy: requests are mostly a row or a few
        position = {code: i for i, code in enumerate(used)}
        keys, codes = [keys[code] for code in used], np.fromiter(map(position.__getitem__, codes.tolist()), np.intp)
    return np.asarray(codes, dtype="<u4").tobytes() + orjson.dumps(keys)


def decode_key(code: bytes, distinct: bytes) -> str | None:
    """One row's key, from its 4 bytes of `encode_keys` and the distinct keys' JSON."""
    found: str | None = orjson.loads(distinct)[int.from_bytes(code, "little")]
    return found


def encode_floats(values: np.ndarray) -> bytes:
    """One float per row as little-endian float64: row i is bytes 8i to 8i + 8."""
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def decode_float(stored: bytes) -> float:
    return float(np.frombuffer(stored, dtype="<f8", count=1)[0])
