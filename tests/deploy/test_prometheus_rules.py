"""The Prometheus configuration in deploy/prometheus/: promtool checks and unit tests, and consistency checks.

promtool comes from the Debian package `prometheus`: `scripts/install-system-deps.sh` installs it. A missing promtool
fails these tests instead of skipping them, so that alert rules are never shipped untested.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.exported import EXPORTED

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULE_FILES = [PROMETHEUS / "rules" / "recording.yml", PROMETHEUS / "rules" / "alerts.yml"]
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*_test.yml"))

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
SEVERITIES = {"page", "ticket"}
# Alerts whose series carry no `model` label (the scrape target; a worker pid): their summary cannot name the model.
NOT_PER_MODEL = {"ClassifierTargetDown", "ClassifierWorkerLost"}

METRIC_TOKEN = re.compile(r"(?<![\w:])classifier_[a-z0-9_]+")
RECORDED_TOKEN = re.compile(r"(?<![\w:])classifier:[a-z0-9_]+:[a-z0-9_]+|(?<![\w:])classifier:[a-z0-9_]+(?![\w:])")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool from the repository root; fail (not skip) when it is not installed."""
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not on PATH: run scripts/install-system-deps.sh (as root) to install it")
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    command = " ".join(["promtool", *result.args[1:]])
    assert result.returncode == 0, f"`{command}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules(path: Path) -> Iterator[dict[str, Any]]:
    for group in load(path)["groups"]:
        yield from group["rules"]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules(PROMETHEUS / "rules" / "alerts.yml") if "alert" in rule]


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_config_is_valid() -> None:
    assert_ok(promtool("check", "config", relative(CONFIG)))


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_is_valid(path: Path) -> None:
    assert_ok(promtool("check", "rules", relative(path)))


def test_there_are_rule_unit_tests() -> None:
    assert PROMETHEUS / "tests" / "alerts_test.yml" in TEST_FILES


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_rule_unit_tests_pass(path: Path) -> None:
    assert_ok(promtool("test", "rules", relative(path)))


def test_config_loads_both_rule_files() -> None:
    config = load(CONFIG)
    assert [(CONFIG.parent / f).resolve() for f in config["rule_files"]] == RULE_FILES
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "classifier-service"
    assert job.get("metrics_path", "/metrics") == "/metrics"


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_alert_tells_the_on_call_what_to_do(alert: dict[str, Any]) -> None:
    assert alert["labels"]["severity"] in SEVERITIES
    assert "for" in alert, "an alert without `for` fires on one bad evaluation"
    summary, description = alert["annotations"]["summary"], alert["annotations"]["description"]
    assert summary.strip() and "\n" not in summary.strip()
    if alert["alert"] not in NOT_PER_MODEL:
        assert "{{ $labels.model }}" in summary
    assert len(description) > 200, "the description says what it means and what to check first"


def alert_rule_tests() -> dict[str, dict[str, int]]:
    """alertname -> number of firing and quiet `alert_rule_test` cases over every test file."""
    cases: dict[str, dict[str, int]] = {}
    for path in TEST_FILES:
        for group in load(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                counts = cases.setdefault(case["alertname"], {"firing": 0, "quiet": 0})
                counts["firing" if case.get("exp_alerts") else "quiet"] += 1
    return cases


def test_every_alert_fires_and_stays_quiet_in_a_unit_test() -> None:
    names = {alert["alert"] for alert in alerts()}
    cases = alert_rule_tests()
    assert set(cases) == names
    assert {name for name, counts in cases.items() if not counts["firing"]} == set(), "no firing case"
    assert {name for name, counts in cases.items() if not counts["quiet"]} == set(), "no quiet case"


def test_firing_cases_check_severity_and_summary() -> None:
    for path in TEST_FILES:
        for group in load(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                for expected in case.get("exp_alerts") or []:
                    where = f"{path.name}: {group.get('name')}: {case['alertname']} at {case['eval_time']}"
                    assert expected["exp_labels"].get("severity") in SEVERITIES, where
                    assert expected.get("exp_annotations", {}).get("summary"), where


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_unit_tests_evaluate_recording_rules_before_alerts(path: Path) -> None:
    """Without group_eval_order promtool runs groups in any order, and an alert lags its recording rule at random."""
    test_file = load(path)
    groups = [g["name"] for f in test_file["rule_files"] for g in load(path.parent / f)["groups"]]
    order = test_file["group_eval_order"]
    assert sorted(order) == sorted(groups)
    recording = [name for name in order if name.startswith("classifier-recording-")]
    assert order[: len(recording)] == recording


def referenced(pattern: re.Pattern[str], with_annotations: bool) -> dict[str, set[str]]:
    """Names matched in every rule expression (and annotation), name -> the rules that use it."""
    found: dict[str, set[str]] = {}
    for path in RULE_FILES:
        for rule in rules(path):
            texts = [rule["expr"], *(rule.get("annotations", {}).values() if with_annotations else [])]
            for name in pattern.findall("\n".join(texts)):
                found.setdefault(name, set()).add(rule.get("alert") or rule["record"])
    return found


def exported_name(token: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        base = token.removesuffix(suffix)
        if base != token and EXPORTED.get(base) == "histogram":
            return base
    return token


def test_rules_read_only_exported_metrics() -> None:
    used = referenced(METRIC_TOKEN, with_annotations=False)
    assert used, "the pattern found no metric at all"
    unknown = {token: sorted(users) for token, users in used.items() if exported_name(token) not in EXPORTED}
    assert unknown == {}, f"not in EXPORTED (name: rules using it): {unknown}"


def test_annotations_name_only_exported_metrics() -> None:
    used = referenced(METRIC_TOKEN, with_annotations=True)
    unknown = {token: sorted(users) for token, users in used.items() if exported_name(token) not in EXPORTED}
    assert unknown == {}, f"not in EXPORTED (name: rules using it): {unknown}"


def test_recorded_series_used_are_recorded() -> None:
    recorded = {rule["record"] for path in RULE_FILES for rule in rules(path) if "record" in rule}
    used = referenced(RECORDED_TOKEN, with_annotations=True)
    assert used, "the pattern found no recorded series at all"
    missing = {name: sorted(users) for name, users in used.items() if name not in recorded}
    assert missing == {}, f"used but recorded by no rule (name: rules using it): {missing}"
