"""The Grafana dashboard deploy/grafana/classifier-service.json: its import shape, and that every PromQL query names
only series that exist — metrics the service exports, or series that deploy/prometheus/rules/recording.yml records."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.exported import EXPORTED

PROJECT = Path(__file__).resolve().parents[2]
DASHBOARD = PROJECT / "deploy" / "grafana" / "classifier-service.json"
RECORDING_RULES = PROJECT / "deploy" / "prometheus" / "rules" / "recording.yml"

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# The metrics GET /metrics exports, read from the service's code, and the histograms among them: Prometheus
# stores a classic histogram only as <name>_bucket, _sum and _count.
EXPORTED_METRICS = frozenset(EXPORTED)
HISTOGRAMS = frozenset(name for name, kind in EXPORTED.items() if kind == "histogram")
# BentoML's own series that the metric spec names (the dashboard does not need them, a panel may).
BENTOML_METRICS = frozenset({"bentoml_service_request_total"})
BENTOML_HISTOGRAMS = frozenset({"bentoml_service_request_duration_seconds"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

EXPORTED_SERIES = frozenset(
    (EXPORTED_METRICS - HISTOGRAMS)
    | BENTOML_METRICS
    | {name + suffix for name in HISTOGRAMS | BENTOML_HISTOGRAMS for suffix in HISTOGRAM_SUFFIXES}
)

# Series without a `model` label: every other series a query selects must filter on model=~"$model".
# The prediction log's queue, batch writes and retention deletes are shared by every model.
NOT_MODEL_SCOPED = frozenset(
    {
        "classifier_requests_in_flight",
        "classifier_worker_heartbeat_timestamp_seconds",
        "classifier:workers_alive",
        "classifier_prediction_log_queue_rows",
        "classifier_prediction_log_write_duration_seconds_bucket",
        "classifier_prediction_log_deleted_rows_total",
    }
)

# --- a PromQL scanner: just enough to find the metric names an expression selects ---------------------------------

# Word lists, split below: PromQL's functions, aggregation operators and keywords (lower case: PromQL's keywords and
# aggregation operators are case-insensitive), and the modifiers followed by a parenthesised list of label names.
_FUNCTION_WORDS = """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max clamp_min
    cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv
    double_exponential_smoothing exp floor histogram_avg histogram_count histogram_fraction histogram_quantile
    histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase info irate label_join
    label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
    predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_by_label
    sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector
    year
"""
_AGGREGATION_WORDS = "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio"
_KEYWORD_WORDS = "and or unless atan2 bool offset start end inf nan"
_LABEL_LIST_MODIFIER_WORDS = "by without on ignoring group_left group_right"
FUNCTIONS = frozenset(_FUNCTION_WORDS.split())
AGGREGATIONS = frozenset(_AGGREGATION_WORDS.split())
KEYWORDS = frozenset(_KEYWORD_WORDS.split())
LABEL_LIST_MODIFIERS = frozenset(_LABEL_LIST_MODIFIER_WORDS.split())

_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
# Numbers, hex numbers and durations (5m, 1h30m): a digit or a dot-digit starts them, no identifier starts so.
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z0-9_]*")
_GRAFANA_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|\w+)")
_MODEL_FILTER = re.compile(r'(?<![\w"])model\s*=~\s*"\$model"')


@dataclass(frozen=True)
class Selector:
    """A metric name the expression selects, and the text of its label matchers (None: no `{...}`)."""

    name: str
    matchers: str | None = None


@dataclass
class Scan:
    selectors: list[Selector] = field(default_factory=list)
    # Identifiers that are no function, keyword or metric reference: a misspelt function, or a metric of no
    # classifier/bentoml family that this dashboard has no business selecting.
    unexpected: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> set[str]:
        return {s.name for s in self.selectors}


def _is_metric_reference(token: str) -> bool:
    return "classifier" in token or token.startswith("bentoml_")


def _skip_string(expr: str, i: int) -> int:
    """expr[i] opens a string ("...", '...' or `...`); the index after its closing quote."""
    quote = expr[i]
    i += 1
    while i < len(expr):
        if expr[i] == "\\" and quote != "`":
            i += 2
            continue
        if expr[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string in {expr!r}")


def _skip_group(expr: str, i: int, close: str) -> int:
    """expr[i] opens a {...}, [...] or (label list); the index after its closing character, strings skipped."""
    i += 1
    while i < len(expr):
        if expr[i] in "\"'`":
            i = _skip_string(expr, i)
            continue
        if expr[i] == close:
            return i + 1
        i += 1
    raise ValueError(f"unclosed {close!r} in {expr!r}")


def _skip_spaces(expr: str, i: int) -> int:
    while i < len(expr) and expr[i].isspace():
        i += 1
    return i


def scan(expr: str) -> Scan:
    """Find the metric references of a PromQL expression (with Grafana variables in it).

    Ignored: label matchers `{...}`, strings, range/subquery/offset durations, the label lists of by, without, on,
    ignoring, group_left and group_right, functions, aggregation operators, keywords, numbers, comments and
    Grafana variables ($model, $__rate_interval, ${...}). A remaining identifier that contains `classifier` or starts
    with `bentoml_` is a metric reference; any other remaining identifier is reported as unexpected.
    Raises ValueError on an unterminated string or unbalanced brackets.
    """
    result = Scan()
    depth = 0
    i = 0
    while i < len(expr):
        char = expr[i]
        if char.isspace():
            i += 1
        elif char == "#":
            end = expr.find("\n", i)
            i = len(expr) if end < 0 else end
        elif char in "\"'`":
            i = _skip_string(expr, i)
        elif char == "{":
            i = _skip_group(expr, i, "}")  # a selector with no metric name: {__name__=...}
        elif char == "[":
            i = _skip_group(expr, i, "]")  # [5m], [$__rate_interval], [1h:5m]
        elif char == "$":
            variable = _GRAFANA_VARIABLE.match(expr, i)
            if variable is None:
                raise ValueError(f"stray $ at {i} in {expr!r}")
            i = variable.end()
        elif char.isdigit() or (char == "." and expr[i + 1 : i + 2].isdigit()):
            number = _NUMBER.match(expr, i)
            assert number is not None
            i = number.end()
        elif char == "(":
            depth += 1
            i += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' at {i} in {expr!r}")
            i += 1
        elif identifier := _IDENTIFIER.match(expr, i):
            token = identifier.group()
            word = token.lower()
            i = identifier.end()
            after = _skip_spaces(expr, i)
            if word in LABEL_LIST_MODIFIERS:
                if expr[after : after + 1] == "(":
                    i = _skip_group(expr, after, ")")
            elif word in FUNCTIONS or word in AGGREGATIONS or word in KEYWORDS:
                pass
            elif _is_metric_reference(token):
                matchers = None
                if expr[after : after + 1] == "{":
                    i = _skip_group(expr, after, "}")
                    matchers = expr[after + 1 : i - 1]
                result.selectors.append(Selector(token, matchers))
            else:
                result.unexpected.append(token)
        else:
            i += 1  # an operator, comma, @ ...
    if depth:
        raise ValueError(f"unbalanced '(' in {expr!r}")
    return result


def metric_names(expr: str) -> set[str]:
    return scan(expr).metrics


def unknown_references(expr: str, known: frozenset[str]) -> set[str]:
    return metric_names(expr) - known


def selectors_missing_model_filter(expr: str) -> list[Selector]:
    """The model-scoped series of expr selected without model=~"$model"."""
    return [
        s
        for s in scan(expr).selectors
        if s.name not in NOT_MODEL_SCOPED
        and not s.name.startswith("bentoml_")
        and not (s.matchers is not None and _MODEL_FILTER.search(s.matchers))
    ]


# --- loading ------------------------------------------------------------------------------------------------------


def load_recorded_series() -> frozenset[str]:
    """The `record:` names of the recording rules. A missing file fails the test: the dashboard reads them."""
    if not RECORDING_RULES.is_file():
        pytest.fail(
            f"{RECORDING_RULES.relative_to(PROJECT)} does not exist: the dashboard queries classifier:* recorded "
            "series that it must define (write the recording rules, or stop querying recorded series)",
            pytrace=False,
        )
    document = yaml.safe_load(RECORDING_RULES.read_text(encoding="utf-8")) or {}
    names = frozenset(
        rule["record"]
        for group in document.get("groups") or []
        for rule in group.get("rules") or []
        if isinstance(rule, dict) and "record" in rule
    )
    if not names:
        pytest.fail(f"{RECORDING_RULES.relative_to(PROJECT)} records no series", pytrace=False)
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels folded inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels") or [])


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in all_panels(dashboard["panels"]) if p.get("type") != "row"]


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every target."""
    return [(p.get("title", "?"), t.get("expr", "")) for p in query_panels(dashboard) for t in p.get("targets") or []]


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a JSON document, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


# --- the scanner itself -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (
            'histogram_quantile(0.99, sum by (model, le) (rate(classifier_batch_rows_bucket{model=~"$model", '
            'endpoint="/models/{name}"}[$__rate_interval])))',
            {"classifier_batch_rows_bucket"},
        ),
        (
            'classifier:prediction_share:rate1h{model=~"$model"}\n- on (model, level, label) group_left '
            "(classifier_tag) max by (model) (classifier_validation_prediction_share offset 1h)",
            {"classifier:prediction_share:rate1h", "classifier_validation_prediction_share"},
        ),
        (
            "SUM WITHOUT (pid, classifier_pid) (classifier_worker_heartbeat_timestamp_seconds) > BOOL 1e-3 "
            "unless ignoring (classifier_x) classifier:workers_alive",
            {"classifier_worker_heartbeat_timestamp_seconds", "classifier:workers_alive"},
        ),
        (
            'topk(${topn}, bentoml_service_request_total{endpoint=~"$endpoint"} @ end()) # classifier_in_comment',
            {"bentoml_service_request_total"},
        ),
        (
            'label_replace(classifier_model_info{model=~"${model:regex}"}, "classifier_x", "$1", "model", "(.*)")',
            {"classifier_model_info"},
        ),
        (
            "sum(rate(classifier_rows_total[1h:5m] offset -30m)) / 0x10 * .5 + 1.5e+3 - Inf",
            {"classifier_rows_total"},
        ),
        ('count_values("classifier_label", vector(1)) or on () time() - $__range_s', set()),
    ],
)
def test_scan_finds_the_metric_references_only(expr: str, expected: set[str]) -> None:
    result = scan(expr)
    assert result.metrics == expected
    assert result.unexpected == []


def test_unknown_metric_is_reported() -> None:
    expr = 'sum(rate(classifier_requets_total{model=~"$model"}[5m])) / sum(rate(classifier_requests_total[5m]))'
    assert unknown_references(expr, EXPORTED_SERIES) == {"classifier_requets_total"}
    assert unknown_references("classifier_feature_drift_psi_max", EXPORTED_SERIES) == {
        "classifier_feature_drift_psi_max"
    }


def test_histogram_is_selected_by_its_series_only() -> None:
    assert (
        unknown_references("classifier_prediction_margin_sum / classifier_prediction_margin_count", EXPORTED_SERIES)
        == set()
    )
    assert unknown_references("classifier_prediction_margin", EXPORTED_SERIES) == {"classifier_prediction_margin"}
    assert unknown_references("classifier_abstentions_total_bucket", EXPORTED_SERIES) == {
        "classifier_abstentions_total_bucket"
    }


def test_misspelt_function_and_foreign_metric_are_unexpected() -> None:
    assert scan("histogram_quantil(0.9, classifier_batch_rows_bucket) + up").unexpected == ["histogram_quantil", "up"]


@pytest.mark.parametrize(
    "expr", ['sum(classifier_rows_total{model="x"}', 'classifier_rows_total{model="x}', "rate(x[5m]))", "a $ b"]
)
def test_malformed_expression_is_refused(expr: str) -> None:
    with pytest.raises(ValueError):
        scan(expr)


def test_model_filter_is_required_on_every_model_scoped_selector() -> None:
    expr = (
        'sum by (model) (rate(classifier_rows_total{model=~"$model", outcome="accepted"}[5m]))\n'
        '/ sum by (model) (rate(classifier_rows_total{outcome="accepted"}[5m]))\n'
        '+ classifier_validation_accuracy{model="$model"} + classifier_validation_ece{submodel=~"$model"}\n'
        "* on () group_left classifier:workers_alive - time() + classifier_worker_heartbeat_timestamp_seconds"
    )
    assert selectors_missing_model_filter(expr) == [
        Selector("classifier_rows_total", 'outcome="accepted"'),
        Selector("classifier_validation_accuracy", 'model="$model"'),
        Selector("classifier_validation_ece", 'submodel=~"$model"'),
    ]


# --- the dashboard ------------------------------------------------------------------------------------------------


def test_import_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["id"] is None
    assert isinstance(dashboard.get("uid"), str) and dashboard["uid"]
    assert dashboard["title"] == "classifier-service"
    assert dashboard["schemaVersion"] == 39
    assert dashboard["panels"]
    inputs = {i["name"]: i for i in dashboard.get("__inputs") or []}
    assert "DS_PROMETHEUS" in inputs, "__inputs must declare the DS_PROMETHEUS datasource"
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"


def test_every_panel_queries_the_prometheus_input(dashboard: dict[str, Any]) -> None:
    problems = []
    for panel in query_panels(dashboard):
        title = panel.get("title", f"panel {panel.get('id')}")
        if panel.get("datasource") != DATASOURCE:
            problems.append(f"{title}: datasource {panel.get('datasource')!r}")
        targets = panel.get("targets") or []
        if not any(isinstance(t.get("expr"), str) and t["expr"].strip() for t in targets):
            problems.append(f"{title}: no target with an expr")
        for target in targets:
            if not (isinstance(target.get("expr"), str) and target["expr"].strip()):
                problems.append(f"{title}: target {target.get('refId')} has an empty expr")
            if "datasource" in target and target["datasource"] != DATASOURCE:
                problems.append(f"{title}: target {target.get('refId')} datasource {target['datasource']!r}")
        ref_ids = [t.get("refId") for t in targets]
        if len(ref_ids) != len(set(ref_ids)):
            problems.append(f"{title}: refIds {ref_ids} repeat")
    assert not problems, "\n".join(problems)


def test_no_datasource_other_than_the_input(dashboard: dict[str, Any]) -> None:
    """A concrete datasource uid left from an export would not resolve on another Grafana."""
    builtin = {"type": "grafana", "uid": "-- Grafana --"}  # the built-in annotations
    used = [value for key, value in walk(dashboard) if key == "datasource"]
    assert used and all(value in (DATASOURCE, builtin) for value in used), [
        v for v in used if v not in (DATASOURCE, builtin)
    ]


def test_panel_ids_are_unique_and_every_panel_has_a_grid_position(dashboard: dict[str, Any]) -> None:
    panels = list(all_panels(dashboard["panels"]))
    assert all(isinstance(p.get("id"), int) for p in panels), [p.get("id") for p in panels]
    ids: list[int] = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for panel in panels:
        grid = panel.get("gridPos")
        assert isinstance(grid, dict) and all(isinstance(grid.get(k), int) for k in "hwxy"), panel.get("title")
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel.get("title")


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    boxes = [(p.get("title"), p["gridPos"]) for p in dashboard["panels"]]
    for n, (title_a, a) in enumerate(boxes):
        for title_b, b in boxes[n + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, f"{title_a!r} overlaps {title_b!r}"


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"model", "endpoint"} <= variables.keys()
    model = variables["model"]
    query = model["query"]["query"] if isinstance(model["query"], dict) else model["query"]
    assert re.fullmatch(r"label_values\(\s*classifier_model_info\s*,\s*model\s*\)", query), query
    assert model["multi"] is True and model["includeAll"] is True
    for variable in variables.values():
        assert variable["datasource"] == DATASOURCE, variable["name"]
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        selector = re.fullmatch(r"label_values\((?P<selector>.+),\s*\w+\s*\)", query.strip())
        assert selector, f"{variable['name']}: {query}"
        assert metric_names(selector["selector"]) and not unknown_references(selector["selector"], EXPORTED_SERIES)


def test_every_query_selects_exported_or_recorded_series(dashboard: dict[str, Any]) -> None:
    known = EXPORTED_SERIES | load_recorded_series()
    problems = []
    for title, expr in queries(dashboard):
        try:
            result = scan(expr)
        except ValueError as error:
            problems.append(f"{title}: {error}")
            continue
        if not result.selectors:
            problems.append(f"{title}: references no metric: {expr!r}")
        if unknown := result.metrics - known:
            problems.append(f"{title}: neither exported nor recorded: {sorted(unknown)} in {expr!r}")
        if result.unexpected:
            problems.append(f"{title}: unexpected identifiers {result.unexpected} in {expr!r}")
    assert not problems, "\n".join(problems)


def test_every_model_scoped_query_filters_on_the_model_variable(dashboard: dict[str, Any]) -> None:
    problems = [
        f'{title}: {s.name}{{{s.matchers or ""}}} lacks model=~"$model"'
        for title, expr in queries(dashboard)
        for s in selectors_missing_model_filter(expr)
    ]
    assert not problems, "\n".join(problems)


def test_drift_panels_plot_the_cross_replica_psi_of_the_recording_rules(dashboard: dict[str, Any]) -> None:
    """Each replica's own drift gauges are one instance's window; the dashboard plots the rules' PSI over all."""
    used = {name for _, expr in queries(dashboard) for name in scan(expr).metrics}
    per_instance = {"classifier_feature_drift_psi", "classifier_prediction_drift_psi", "classifier_drift_window_rows"}
    assert not used & per_instance
    cross_replica = {
        "classifier:feature_drift_psi:increase30m",
        "classifier:prediction_drift_psi:increase30m",
        "classifier:drift_window_rows:increase30m",
    }
    assert cross_replica <= used
