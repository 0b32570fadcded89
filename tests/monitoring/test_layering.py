"""Imports flow one way (STYLE.md §1): monitoring and the classifier core do not import each other."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service"


def loaded_after(statement: str) -> list[str]:
    """The modules in `sys.modules` of a fresh interpreter after running `statement` in the project root."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return modules


def under(modules: list[str], package: str) -> list[str]:
    return [m for m in modules if m == package or m.startswith(f"{package}.")]


def test_monitoring_does_not_import_the_classifier_core() -> None:
    """`service.monitoring.monitor` (and with it the whole monitoring package) loads no `service.classifiers`."""
    modules = loaded_after("import service.monitoring.monitor")
    assert "service.monitoring.monitor" in modules  # the probe ran
    assert under(modules, "service.classifiers") == []


def test_the_core_does_not_import_monitoring_or_prometheus() -> None:
    """`service.classifiers` loads neither `service.monitoring` nor `prometheus_client`."""
    modules = loaded_after("import service.classifiers")
    assert "service.classifiers" in modules
    assert under(modules, "service.monitoring") == []
    assert under(modules, "prometheus_client") == []


def test_the_probe_sees_an_import() -> None:
    """The same probe reports both packages once they are imported, so the tests above can fail."""
    modules = loaded_after("import service.classifiers, service.monitoring.metrics")
    assert under(modules, "service.monitoring") and under(modules, "prometheus_client")


def prometheus_importers(root: Path) -> list[str]:
    """The files under `root` with an `import prometheus_client...` or `from prometheus_client... import`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            if any(name == "prometheus_client" or name.startswith("prometheus_client.") for name in names):
                found.append(path.relative_to(root.parent).as_posix())
                break
    return found


def test_only_metrics_py_and_its_door_import_prometheus_client() -> None:
    """Across service/, prometheus_client is imported by service/monitoring/metrics.py and its door to the library's
    internals, prometheus_fast.py."""
    assert prometheus_importers(SERVICE) == ["service/monitoring/metrics.py", "service/monitoring/prometheus_fast.py"]


def test_the_scan_finds_nested_and_aliased_imports(tmp_path: Path) -> None:
    """The scanner sees imports inside functions, aliases and submodules, and ignores mere mentions."""
    package = tmp_path / "service"
    package.mkdir()
    (package / "a.py").write_text("def f():\n    import prometheus_client as p\n", encoding="utf-8")
    (package / "b.py").write_text("from prometheus_client.core import GaugeMetricFamily\n", encoding="utf-8")
    (package / "c.py").write_text('"""Only metrics.py imports prometheus_client."""\nimport os\n', encoding="utf-8")
    assert prometheus_importers(package) == ["service/a.py", "service/b.py"]
