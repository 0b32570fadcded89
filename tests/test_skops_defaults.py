"""skops's default trusted types from the record (`service.skops_defaults`): the same lists skops computes, the same
refusals, and skops's own computation wherever the record is for other releases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service import skops_defaults

PROJECT = Path(__file__).resolve().parents[1]


def run(code: str) -> str:
    """The output of `python -c code` in a fresh interpreter of this environment; fails with its output."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, env=os.environ, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_record_holds_what_skops_computes_for_the_installed_releases() -> None:
    """After `make upgrade` this fails until `python -m service.skops_defaults` records the new releases' lists."""
    computed = json.loads(
        run("import json; from service import skops_defaults as d; print(json.dumps(d.computed_defaults()))")
    )
    recorded = json.loads(skops_defaults.RECORD.read_text())
    assert recorded["releases"] == skops_defaults.installed_releases()
    types_by_name = {
        name: [f"{kind.__module__}.{kind.__qualname__}" for kind in kinds]
        for name, kinds in skops_defaults._TYPE_LISTS.items()
    }
    assert computed == {**recorded["lists"], **types_by_name}


def test_skops_given_the_record_loads_what_it_trusts_and_reports_what_it_does_not() -> None:
    checked = json.loads(
        run(
            "import json, sys\n"
            "from service.skops_defaults import use_recorded_defaults\n"
            "recorded = use_recorded_defaults()\n"
            "import numpy as np, skops.io\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "from sklearn.tree import DecisionTreeClassifier\n"
            "X, y = np.arange(20.0).reshape(10, 2), np.arange(10) % 2\n"
            "linear = skops.io.dumps(LogisticRegression().fit(X, y))\n"
            "tree = skops.io.dumps(DecisionTreeClassifier().fit(X, y))\n"
            "loaded = skops.io.loads(linear, trusted=[])\n"
            "print(json.dumps({'recorded': recorded, 'linear': skops.io.get_untrusted_types(data=linear),\n"
            "    'tree': skops.io.get_untrusted_types(data=tree), 'coef': loaded.coef_.tolist(),\n"
            "    'all_estimators_walked': 'sklearn.utils._testing' in sys.modules}))\n"
        )
    )
    assert checked["recorded"] is True
    assert checked["linear"] == [] and len(checked["coef"][0]) == 2
    assert checked["tree"] == ["sklearn.tree._tree.Tree"]  # trusted by the service's list, not by skops's defaults
    assert checked["all_estimators_walked"] is False


def test_other_releases_leave_skops_to_compute_its_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, skops_defaults.MODULE, raising=False)
    monkeypatch.setattr(skops_defaults, "installed_releases", lambda: {"skops": "0.0"})
    assert skops_defaults.use_recorded_defaults() is False
    assert skops_defaults.MODULE not in sys.modules
