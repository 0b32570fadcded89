"""skops's default trusted types, as skops computes them, recorded for the installed releases.

`skops.io` builds its default trusted-type lists when it is imported (`skops.io._trusted_types`): the names of every
scikit-learn estimator (`sklearn.utils.all_estimators()`, which imports every scikit-learn module, pytest and
numpy.f2py among them) and of every NumPy and SciPy ufunc (each looked up in every loaded module). That is about 0.5 s
of CPU of a worker's start-up (`import skops.io` 2.2 -> 1.8 s here), the same each time for the same releases of
skops, scikit-learn, SciPy and NumPy on the same platform.

`skops_trusted_types.json` records those lists, as skops computed them (`python -m service.skops_defaults` writes it),
with the releases they were computed for. `use_recorded_defaults()` gives skops that module before `skops.io` is
first imported, when the installed releases are the recorded ones; otherwise skops computes its lists as usual. Files
are still loaded by skops with its own checks against the same lists: only where the lists come from changes, and
`tests/test_skops_defaults.py` fails when the record differs from what skops computes.
"""

from __future__ import annotations

import json
import logging
import sys
import sysconfig
import types
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RECORD = Path(__file__).with_name("skops_trusted_types.json")
MODULE = "skops.io._trusted_types"
# the packages whose releases decide the lists
PACKAGES = ("skops", "scikit-learn", "scipy", "numpy")
# lists of types rather than names: written here, not recorded
_TYPE_LISTS: dict[str, list[type]] = {
    "PRIMITIVES_TYPES": [int, float, str, bool],
    "CONTAINER_TYPES": [list, set, map, tuple],
}


def installed_releases() -> dict[str, str]:
    """The installed release of each package in `PACKAGES`, from its package record (nothing imported), and the
    platform (NumPy's scalar types differ between platforms)."""
    return {"platform": sysconfig.get_platform()} | {package: metadata.version(package) for package in PACKAGES}


def use_recorded_defaults() -> bool:
    """Before `skops.io` is imported: give it the recorded lists when they were computed for the installed releases
    (True), else leave skops to compute them (False). Idempotent; does nothing once skops' module is loaded."""
    if MODULE in sys.modules:
        return isinstance(sys.modules[MODULE], _RecordedDefaults)
    record = json.loads(RECORD.read_text())
    releases = installed_releases()
    if record["releases"] != releases:
        logger.warning(
            "skops computes its trusted types at import (0.5 s of CPU): %s records them for %s, installed are %s; "
            "`python -m service.skops_defaults` records them anew",
            RECORD.name, record["releases"], releases,
        )  # fmt: skip
        return False
    sys.modules[MODULE] = _RecordedDefaults(MODULE, record["lists"])
    return True


class _RecordedDefaults(types.ModuleType):
    """skops' `_trusted_types` module, from the record."""

    def __init__(self, name: str, lists: dict[str, list[str]]) -> None:
        super().__init__(name, "skops' default trusted types, from service/skops_trusted_types.json")
        for attribute, names in lists.items():
            setattr(self, attribute, list(names))
        for attribute, kinds in _TYPE_LISTS.items():
            setattr(self, attribute, list(kinds))


def computed_defaults() -> dict[str, Any]:
    """skops' public lists as skops computes them in this process (imports skops.io: call it where nothing was
    recorded, as `python -m service.skops_defaults` and the tests do). Names by list; type lists as names."""
    import importlib

    module = importlib.import_module(MODULE)
    if isinstance(module, _RecordedDefaults):
        raise RuntimeError("skops' lists were given from the record in this process: compute them in another")
    return {
        name: [value if isinstance(value, str) else f"{value.__module__}.{value.__qualname__}" for value in values]
        for name, values in vars(module).items()
        if name.isupper() and not name.startswith("_") and isinstance(values, list)
    }


def record() -> dict[str, Any]:
    """What `skops_trusted_types.json` holds for this environment."""
    lists = computed_defaults()
    return {"releases": installed_releases(), "lists": {k: v for k, v in lists.items() if k not in _TYPE_LISTS}}


def main() -> None:
    RECORD.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
    logger.warning("wrote %s", RECORD)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
