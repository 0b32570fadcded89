"""Example tables for docs/loop.md's walkthroughs (`python -m models example-data`), and the tests that follow them.

`reviews`: a synthetic table of numbers (some missing), a category (some missing), review sentences and a time, with
a target of every task kind driven by one score, so each is learnable: `bin` (binary), `multi` (multiclass), `tags`
(multilabel, `|`-joined), `path` (hierarchical, `/`-joined, an unbalanced tree). `reviews-drifted`: rows of the same
world later, whose `bin` now follows `x2` alone: a model trained on `reviews` goes stale on them. Both are
deterministic: the same seed writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported by the functions that build a table: `python -m models` reads this module's names
    import pandas as pd

REVIEWS = {
    "great product fast delivery and a friendly seller": 1.5,
    "love it works perfectly every single day": 1.5,
    "terrible broken item and no refund so far": -1.5,
    "awful quality never buying from them again": -1.5,
    "okay average nothing special about this one": 0.0,
}
FEATURES = ["x1", "x2", "color", "review"]
DRIFT_STARTS = "2026-03-01"  # the drifted rows' times: after the last of the 700 hourly rows of `reviews`


def reviews_table(rows: int = 700, seed: int = 0) -> pd.DataFrame:
    """Features, an hourly `when` from 2026-01-01 and the four targets (module docstring)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    color = rng.choice(["red", "green", "blue"], size=rows).astype(object)
    review = rng.choice(list(REVIEWS), size=rows)
    score = x1 + (color == "red") + np.array([REVIEWS[r] for r in review])
    noisy = score + rng.normal(0, 0.3, rows)
    table = pd.DataFrame({"x1": x1, "x2": x2, "color": color, "review": review})
    table["when"] = pd.date_range("2026-01-01", periods=rows, freq="h").astype(str)
    table.loc[rng.choice(rows, 20, replace=False), "x2"] = np.nan
    table.loc[rng.choice(rows, 10, replace=False), "color"] = None
    table["bin"] = np.where(noisy > 0.5, "yes", "no")
    table["multi"] = pd.cut(noisy, [-9, -1, 0.5, 1.5, 9], labels=["low", "mid", "high", "top"]).astype(str)
    table["tags"] = [
        "|".join(tag for tag, on in (("warm", c == "red"), ("pos", s > 0), ("big", a > 0.5)) if on)
        for c, s, a in zip(color, noisy, x1, strict=True)
    ]
    # an unbalanced tree: 'good' has leaves at depth 2, 'bad' at depths 2 and 3
    table["path"] = [
        ("good/" + ("great" if s > 1.5 else "fine"))
        if s > 0
        else ("bad/awful" if s < -1.5 else "bad/meh/poor" if s < -0.7 else "bad/meh/soso")
        for s in noisy
    ]
    return table


def drifted_reviews_table(rows: int = 500, seed: int = 7) -> pd.DataFrame:
    """Rows of `reviews`' features, timed after it, whose `bin` follows `x2` alone (a missing `x2` counts as 0)."""
    import pandas as pd

    table = reviews_table(rows, seed)[FEATURES]
    return table.assign(
        when=pd.date_range(DRIFT_STARTS, periods=rows, freq="min").astype(str),
        bin=np.where(table["x2"].fillna(0) > 0, "yes", "no"),
    )


EXAMPLES: dict[str, Callable[[], pd.DataFrame]] = {"reviews": reviews_table, "reviews-drifted": drifted_reviews_table}


def write_example(name: str, path: Path) -> int:
    """Write the example table `name` to `path` as CSV; returns its rows."""
    table = EXAMPLES[name]()
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, lineterminator="\n")
    return len(table)
