"""Where the service's files live: one rule for every entry point.

`make`, `python -m models`, `python -m service.*`, `bentoml serve` and the tests all import this package first, and
so resolve the same BentoML store (models) and the same data folder (the SQLite prediction log):

- the BentoML store: `$BENTOML_HOME` if set; else, in a checkout of this project, its `.bentoml` folder; else
  BentoML's own default, `~/bentoml` (an installed package, as in a container, which sets `BENTOML_HOME`).
- the data folder: `$CLF_DATA_DIR` if set; else, in a checkout, its `data` folder; else `./data`.

`apply()` sets `BENTOML_HOME` before BentoML is imported, so every process that imports the package agrees with the
one that started it.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SERVER_FOLDER_PREFIX = "server-"


def checkout() -> Path | None:
    """The checkout this package runs from, if it runs from one (not from an installed wheel or a bento)."""
    return PROJECT if (PROJECT / "pyproject.toml").is_file() and (PROJECT / "models").is_dir() else None


def bentoml_home() -> tuple[Path, str]:
    """The BentoML store this process uses, and why that one."""
    if "BENTOML_HOME" in os.environ:
        return Path(os.environ["BENTOML_HOME"]).resolve(), "BENTOML_HOME"
    project = checkout()
    if project is not None:
        return project / ".bentoml", "the checkout's store"
    return Path.home() / "bentoml", "BentoML's default"


def data_dir() -> tuple[Path, str]:
    """The folder of the service's own files (the SQLite prediction log), and why that one."""
    if "CLF_DATA_DIR" in os.environ:
        return Path(os.environ["CLF_DATA_DIR"]).resolve(), "CLF_DATA_DIR"
    project = checkout()
    if project is not None:
        return project / "data", "the checkout's data folder"
    return Path("data").resolve(), "./data"


_applied: tuple[Path, str] | None = None  # the store `apply()` chose, and why


def apply() -> None:
    """Set `BENTOML_HOME` by the rule above, for BentoML in this process and in the processes it starts (workers);
    `Settings.data_dir` defaults to `data_dir()`."""
    global _applied
    if _applied is None:
        _applied = bentoml_home()
        os.environ["BENTOML_HOME"] = str(_applied[0])


def describe() -> str:
    """Which store and data folder are used, and why: the line an entry point prints first."""
    (home, why_home), (data, why_data) = _applied or bentoml_home(), data_dir()
    return f"BentoML store {home} ({why_home}); data folder {data} ({why_data})"


def server_metrics_folder(home: Path, arbiter_pid: int) -> Path:
    """The Prometheus multiprocess folder of the server whose arbiter (the `bentoml serve` process) is `arbiter_pid`,
    in the BentoML store `home` (`service.bentoml_fixes` gives each server its own)."""
    return home / "prometheus_multiproc_dir" / f"{SERVER_FOLDER_PREFIX}{arbiter_pid}"
