"""The high-cardinality bench pair: 1,000 synthetic classes in 40 groups of 25, flat and hierarchical.

`python -m bench.models` (with BENTOML_HOME set) registers `flat_1000` and `hier_40x25` when the store lacks them.
Class centres are a group centre plus a class offset, so the groups are real clusters and the hierarchy means
something. Data, split and models are deterministic (fixed seeds).
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

SEED = 20240
GROUPS = 40
CLASSES_PER_GROUP = 25
FEATURES = 32
ROWS_PER_CLASS = 20
VALIDATION_SHARE = 0.25
GROUP_SCALE = 4.0  # spread of the group centres
CLASS_SCALE = 1.0  # spread of a class centre around its group centre
NOISE_SCALE = 1.0  # spread of the rows around their class centre

FLAT = "flat_1000"
HIERARCHICAL = "hier_40x25"


def group_name(g: int) -> str:
    return f"g{g:02d}"


def class_name(g: int, c: int) -> str:
    return f"g{g:02d}c{c:02d}"


def hierarchy() -> dict[str, list[str]]:
    """`{ROOT: groups, group: its classes}`."""
    from service.classifiers import ROOT

    tree = {ROOT: [group_name(g) for g in range(GROUPS)]}
    for g in range(GROUPS):
        tree[group_name(g)] = [class_name(g, c) for c in range(CLASSES_PER_GROUP)]
    return tree


@cache
def dataset() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`X_train, X_val, y_train, y_val` with string leaf labels; stratified, so every class has validation rows."""
    rng = np.random.default_rng(SEED)
    group_centres = rng.normal(0.0, GROUP_SCALE, size=(GROUPS, FEATURES))
    offsets = rng.normal(0.0, CLASS_SCALE, size=(GROUPS, CLASSES_PER_GROUP, FEATURES))
    centres = (group_centres[:, None, :] + offsets).reshape(GROUPS * CLASSES_PER_GROUP, FEATURES)
    labels = np.array([class_name(g, c) for g in range(GROUPS) for c in range(CLASSES_PER_GROUP)])
    which = np.repeat(np.arange(len(centres)), ROWS_PER_CLASS)
    X = centres[which] + rng.normal(0.0, NOISE_SCALE, size=(len(which), FEATURES))
    y = labels[which]
    split: list[np.ndarray] = train_test_split(X, y, test_size=VALIDATION_SHARE, random_state=SEED, stratify=y)
    X_train, X_val, y_train, y_val = split
    return X_train, X_val, y_train, y_val


def validation_rows() -> np.ndarray:
    """Rows the bench pair never trained on (the request payloads)."""
    return dataset()[1]


def _lda() -> Any:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    return LinearDiscriminantAnalysis()


def register_flat() -> str:
    from service.store import register_model

    X_train, X_val, y_train, y_val = dataset()
    model = _lda().fit(X_train, y_train)
    return register_model(FLAT, "multiclass", model, X_val, y_val, X_train=X_train, y_train=y_train)


def register_hierarchical() -> str:
    from service.classifiers import fit_hierarchy
    from service.store import register_model

    X_train, X_val, y_train, y_val = dataset()
    tree = hierarchy()
    nodes = fit_hierarchy(lambda _node: _lda(), X_train, y_train, tree)
    return register_model(
        HIERARCHICAL, "hierarchical", nodes, X_val, y_val, X_train=X_train, y_train=y_train, hierarchy=tree
    )


RECIPES = {FLAT: register_flat, HIERARCHICAL: register_hierarchical}


def ensure() -> dict[str, str]:
    """Register each bench model the store (BENTOML_HOME) lacks; returns name -> tag of what was registered."""
    from models.__main__ import servable  # the catalog's own check: present and loadable

    registered = {}
    for name, recipe in RECIPES.items():
        if not servable(name):
            registered[name] = recipe()
    return registered


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ensure()
