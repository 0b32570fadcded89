"""How the log's binary columns hold a request's rows (the other codecs are read back through the stores)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from service.database.codecs import decode_inputs, encode_inputs


@pytest.mark.parametrize(
    "X",
    [
        np.array([[0.1, 1e308], [-0.0, np.nan]]),
        np.array([[1, 2], [3, 4]], dtype=np.int64),
        np.array([[True, False]]),
        np.array([[0.5, "red"], [np.nan, "blue"]], dtype=object),
        pd.DataFrame({"x": [1.5, np.nan], "color": ["red", None]}),
    ],
    ids=["floats", "integers", "booleans", "strings", "frame"],
)
def test_inputs_read_back_as_they_were_validated(X: Any) -> None:
    values = X.to_numpy() if hasattr(X, "to_numpy") else X
    expected = [[None if isinstance(v, float) and v != v else v for v in row] for row in np.asarray(values).tolist()]
    assert decode_inputs(encode_inputs(X), len(values)) == expected
