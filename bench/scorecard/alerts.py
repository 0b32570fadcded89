"""The shipped alert rules evaluated by `promtool test rules` on scraped series, in virtual time.

The rules' windows and `for` durations are minutes to hours; a scorecard replays its traffic in minutes. So each
scrape becomes one step of virtual time (`STEP_MINUTES`), and the scrapes become a promtool unit test's input
series. promtool reports an alert it did not expect with its labels; the generated test expects none, so its
report lists every alert that fires at every step. Two copies of `deploy/prometheus/rules/alerts.yml` are
evaluated, each after the recording rules: as shipped (firing, after `for`), and with `for` removed (the condition
holds: pending or firing). Annotations are dropped from both: they do not change when an alert fires, only what it
says.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
STEP_MINUTES = 1
JOB = "classifier-service"
INSTANCE = "scorecard:3000"

Series = tuple[str, frozenset[tuple[str, str]]]  # (sample name, labels)

# promtool's engine loads at most 10,000 samples per query (hard-coded), and the feature-drift rules read every drift
# bin over 30 minutes: the catalog's ~2,800 bins at one sample a virtual minute. On one instance the per-instance PSI
# gauge is the figure those rules compute (tests/e2e/test_replicas.py), so here it takes their place; the prediction
# drift rules, over the decided labels, stay as shipped.
FEATURE_DRIFT_RULES = {"classifier:drift_bin_share:increase30m", "classifier:drift_reference_share:max"}
FEATURE_DRIFT_PSI = {
    "record": "classifier:feature_drift_psi:increase30m",
    "expr": "max by (model, version, feature) (classifier_feature_drift_psi)",
}


@dataclass(frozen=True)
class Scrape:
    """One scrape's samples and the wall-clock time it was taken (for timestamp gauges)."""

    samples: Mapping[Series, float]
    taken_at: float

    def total(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
        wanted = set(labels.items())
        return sum(v for (sample, key), v in self.samples.items() if sample == name and wanted <= key)


@dataclass(frozen=True)
class Firing:
    """An alert that fired (or whose condition held) at a step, with its labels but `alertname` and `severity`."""

    step: int
    alert: str
    labels: frozenset[tuple[str, str]]

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


@dataclass(frozen=True)
class Evaluation:
    """What the shipped alerts did over a run of scrapes."""

    pending: list[Firing]  # condition held (the rule without `for`)
    firing: list[Firing]  # the rule as shipped


def alert_names() -> list[str]:
    return [str(rule["alert"]) for group in _shipped()["groups"] for rule in group["rules"] if "alert" in rule]


def rule_metric_names() -> set[str]:
    """The raw `classifier_*` metric names the evaluated rules read (histogram and counter samples share their
    stem)."""
    text = yaml.safe_dump(_rules(keep_for=True))
    return set(re.findall(r"\bclassifier_[a-z0-9_]+", text))


def evaluate(scrapes: Sequence[Scrape], workdir: Path | None = None) -> Evaluation:
    """Every alert that holds, and every alert that fires, at each step of `scrapes` (step i = scrape i)."""
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        home = Path(folder)
        series = input_series(scrapes)
        pending = _run(home, "pending", _rules(keep_for=False), series, len(scrapes))
        firing = _run(home, "firing", _rules(keep_for=True), series, len(scrapes))
    return Evaluation(pending=pending, firing=firing)


def input_series(scrapes: Sequence[Scrape]) -> list[dict[str, str]]:
    """promtool's `input_series`: one entry per series the rules read, a value per step (`_` where absent).

    Timestamp gauges (`*_timestamp_seconds`) hold wall-clock times; they are moved to virtual time keeping their
    age at the scrape, so `time() - ...` rules see the ages the service had."""
    wanted = rule_metric_names()
    keys = sorted(
        {key for scrape in scrapes for key in scrape.samples if _stem(key[0]) in wanted},
        key=lambda key: (key[0], sorted(key[1])),
    )
    entries = []
    for name, labels in keys:
        values = []
        for step, scrape in enumerate(scrapes):
            value = scrape.samples.get((name, labels))
            if value is None:
                values.append("_")
                continue
            if name.endswith("_timestamp_seconds"):
                value = value - scrape.taken_at + step * STEP_MINUTES * 60
            values.append(repr(float(value)))
        selector = ", ".join(f'{k}="{_escape(v)}"' for k, v in sorted({*labels, ("job", JOB), ("instance", INSTANCE)}))
        entries.append({"series": f"{name}{{{selector}}}", "values": " ".join(values)})
    return entries


def _stem(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _shipped() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((RULES / "alerts.yml").read_text())
    return loaded


def _rules(keep_for: bool) -> dict[str, Any]:
    """The shipped recording rules, then the alerts, in one group: a group evaluates its rules in order, so every
    alert reads the recorded series of the same step (across groups promtool's order varies, a step of lag or not)."""
    recording: dict[str, Any] = yaml.safe_load((RULES / "recording.yml").read_text())
    rules = []
    for group in recording["groups"]:
        for rule in group["rules"]:
            if rule.get("record") in FEATURE_DRIFT_RULES:
                continue
            rules.append(FEATURE_DRIFT_PSI if rule.get("record") == FEATURE_DRIFT_PSI["record"] else rule)
    for group in _shipped()["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
            if not keep_for:
                rule.pop("for", None)
            rules.append(rule)
    return {"groups": [{"name": "scorecard", "rules": rules}]}


def _run(home: Path, name: str, rules: Mapping[str, object], series: list[dict[str, str]], steps: int) -> list[Firing]:
    rules_file = home / f"{name}-rules.yml"
    rules_file.write_text(yaml.safe_dump(rules, sort_keys=False))
    test = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": f"{STEP_MINUTES}m",
        "tests": [
            {
                "interval": f"{STEP_MINUTES}m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": f"{step * STEP_MINUTES}m", "alertname": alert, "exp_alerts": []}
                    for step in range(steps)
                    for alert in alert_names()
                ],
            }
        ],
    }
    test_file = home / f"{name}-test.yml"
    test_file.write_text(yaml.safe_dump(test, sort_keys=False, width=1 << 30))
    result = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
    report = result.stdout + result.stderr  # the failures go to stderr
    if result.returncode not in (0, 1) or (result.returncode == 1 and "alertname:" not in report):
        raise RuntimeError(f"promtool failed ({result.returncode}):\n{report[-3000:]}")
    return parse_failures(report)


_FAILURE = re.compile(r"^\s*alertname: (\w+), time: ([0-9hms.]+),")
_LABELS = re.compile(r"^\s*Labels:\{(.*)\}\s*$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_failures(report: str) -> list[Firing]:
    """The unexpected alerts of promtool's report: each `alertname: A, time: T,` block's `Labels:{...}` lines."""
    found: list[Firing] = []
    alert, step = "", 0
    for line in report.splitlines():
        if match := _FAILURE.match(line):
            alert, step = match.group(1), int(_minutes(match.group(2)) // STEP_MINUTES)
        elif (match := _LABELS.match(line)) and alert:
            labels = {k: v.encode().decode("unicode_escape") for k, v in _LABEL.findall(match.group(1))}
            labels.pop("alertname", None)
            labels.pop("severity", None)
            found.append(Firing(step, alert, frozenset(labels.items())))
    return found


def _minutes(duration: str) -> float:
    """A Go duration as promtool prints it (`0s`, `7m`, `1h40m`) in minutes."""
    units = {"h": 60.0, "m": 1.0, "s": 1 / 60}
    return sum(float(amount) * units[unit] for amount, unit in re.findall(r"([0-9.]+)([hms])", duration))
