"""`python -m service.export`: the prediction log joined with its labels and outcomes, as CSV or JSON Lines.

One row per logged prediction of a model: its inputs, the answer it got (decision and scores), its current label
and its outcomes, with their times and callers (the API keys that asked for the prediction and gave its label);
streamed page by page in time order, so memory stays constant whatever the range. The database is the service's
(`CLF_DATABASE_URL`, or the SQLite file in `CLF_DATA_DIR`). A progress bar is drawn on stderr when it is a terminal.

    python -m service.export --model digits --since 7d --labelled-only --format csv --output digits.csv
    python -m service.export --model digits --caller mallory --labelled-only --format jsonl
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
import sqlalchemy as sa
from pydantic import ValidationError

from . import home
from .classifiers import InvalidModelError, get_task
from .database.codecs import CSV_LIST_SEPARATOR, decode_inputs
from .database.engine import create_database_engine, current_revision, head_revision, sqlite_path
from .feedback.ids import first_key_at, prediction_id
from .feedback.stores import LogStores
from .feedback.timerange import parse_time
from .rollout.versions import VersionInfo, Versions
from .settings import Settings

PAGE_REQUESTS = 500
PROGRESS_STEP = 1000
FIXED_COLUMNS = ("id", "model", "version", "predicted_at", "request_id", "caller")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell that starts so as a formula


class ExportError(Exception):
    """A problem with the command's arguments or the log: printed, exit code 2."""


def key_range(since: datetime | None, until: datetime | None) -> tuple[str, str]:
    """(after, before): the request keys of predictions made in [since, until) lie strictly between them."""
    after = first_key_at(since.timestamp()) if since is not None else ""
    before = first_key_at(until.timestamp()) if until is not None else "g"  # above every hex key
    return after, before


@dataclass(frozen=True)
class Callers:
    """Which predictions to keep by caller: a prediction is a caller's when the caller asked for it or gave its
    current label. `only`: keep those of these callers (None: every caller's); `excluded`: leave out theirs."""

    only: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()

    @classmethod
    def of(cls, only: Iterable[str] | None, excluded: Iterable[str] | None) -> Callers:
        return cls(None if not only else frozenset(only), frozenset(excluded or ()))

    def keep(self, prediction_caller: str | None, label_caller: str | None) -> bool:
        callers = {prediction_caller, label_caller} - {None}
        if self.only is not None and not callers & self.only:
            return False
        return not callers & self.excluded


EVERY_CALLER = Callers()


def rows(
    stores: LogStores,
    versions: Versions,
    model: str,
    keys: tuple[str, str],
    version: str | None = None,
    labelled_only: bool = False,
    callers: Callers = EVERY_CALLER,
) -> Iterator[dict[str, Any]]:
    """The joined predictions of `model` whose request keys lie in `keys` (`key_range`), oldest first; `callers`
    keeps those of some callers only."""
    after, before = keys
    while True:
        page = stores.predictions.requests_page(model, after, before, PAGE_REQUESTS, version)
        if not page:
            return
        labels, outcomes = stores.feedback.feedback_of([request.key for request in page])
        for request in page:
            info = versions.get(stores.rollout, request.model, request.version)
            decisions = orjson.loads(request.decisions)
            inputs = None if request.inputs is None else decode_inputs(request.inputs, request.rows)
            for row in range(request.rows):
                label = labels.get((request.key, row))
                if labelled_only and label is None:
                    continue
                if callers is not EVERY_CALLER and not callers.keep(request.caller, label and label.caller):
                    continue
                yield _joined(request, row, info, decisions[row], inputs, label, outcomes.get((request.key, row), {}))
        after = page[-1].key


def _joined(
    request: Any,
    row: int,
    info: VersionInfo | None,
    decision: dict[str, Any],
    inputs: list[list[Any]] | None,
    label: Any,
    outcomes: dict[str, float],
) -> dict[str, Any]:
    decision = {k: v for k, v in decision.items() if k != "id"}
    names = info.feature_names if info is not None else [f"x{j}" for j in range(len(inputs[row]) if inputs else 0)]
    return {
        "id": prediction_id(request.key, row),
        "model": request.model,
        "version": request.version,
        "predicted_at": request.created_at.isoformat(),
        "request_id": request.request_id,
        "caller": request.caller,
        "inputs": None if inputs is None else dict(zip(names, inputs[row], strict=True)),
        "prediction": decision,
        "label": None if label is None else _render(info, label.truth_key),
        "labelled_at": None if label is None else label.labelled_at.isoformat(),
        "labelled_by": None if label is None else label.caller,
        "outcomes": outcomes,
    }


def _render(info: VersionInfo | None, truth_key: str) -> dict[str, Any]:
    return {"label": truth_key} if info is None else info.truth.render(truth_key)


class JsonLinesWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, joined: dict[str, Any]) -> None:
        self.out.write(orjson.dumps(joined).decode() + "\n")


class CsvWriter:
    """Flat rows: the features by name, the answer as JSON, the label in the form `python -m models train` reads
    (`label`; `labels` joined by `|`; `path` joined by `/`), the outcomes as JSON. A `request_id`, which the client
    chose, is written so that a spreadsheet reads it as text (`as_text`)."""

    def __init__(self, out: IO[str], feature_names: list[str], label_fields: list[str]) -> None:
        reserved = set(FIXED_COLUMNS) | {"prediction", "labelled_at", "labelled_by", "outcomes", *label_fields}
        clashing = sorted(reserved & set(feature_names))
        if clashing:
            raise ExportError(f"features {clashing} share their names with export columns; use --format jsonl")
        self.features = feature_names
        self.label_fields = label_fields
        self.writer = csv.writer(out, lineterminator="\n")
        # the csv module quotes a field holding a character of the line terminator, not a lone carriage return,
        # which spreadsheets take for the end of a line: a row holding one has every field quoted
        self.quoting_writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
        self.writer.writerow(
            [*FIXED_COLUMNS, *feature_names, "prediction", *label_fields, "labelled_at", "labelled_by", "outcomes"]
        )

    def write(self, joined: dict[str, Any]) -> None:
        inputs = joined["inputs"] or {}
        if inputs and list(inputs) != self.features:
            raise ExportError(
                f"version {joined['version']} takes other features than the first one exported: "
                "export one --version at a time, or use --format jsonl"
            )
        label = joined["label"] or {}
        cells = [
            *(as_text(joined[c]) if c == "request_id" else joined[c] for c in FIXED_COLUMNS),
            *(inputs.get(name) for name in self.features),
            orjson.dumps(joined["prediction"]).decode(),
            *(_csv_value(name, label.get(name)) for name in self.label_fields),
            joined["labelled_at"],
            joined["labelled_by"],
            orjson.dumps(joined["outcomes"]).decode() if joined["outcomes"] else "",
        ]
        carriage_return = any(isinstance(cell, str) and "\r" in cell for cell in cells)
        (self.quoting_writer if carriage_return else self.writer).writerow(cells)


def as_text(value: str | None) -> str | None:
    """A client's string as a CSV cell a spreadsheet shows rather than runs: one that starts with `= + - @`, a tab or
    a carriage return gets a leading `'` (OWASP's advice against CSV injection)."""
    return "'" + value if value is not None and value.startswith(FORMULA_STARTS) else value


def _csv_value(field: str, value: Any) -> Any:
    if isinstance(value, list):
        return CSV_LIST_SEPARATOR[field].join(value)
    return value


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m service.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the served name")
    parser.add_argument("--version", help="one version only (default: every version)")
    parser.add_argument("--since", help="first prediction time: ISO 8601 or an age (30d, 12h); default: the start")
    parser.add_argument("--until", help="predictions made before this time; default: now")
    parser.add_argument("--labelled-only", action="store_true", help="only predictions with a label")
    parser.add_argument(
        "--caller",
        action="append",
        metavar="NAME",
        help="only the predictions this API key asked for or gave the current label of (repeatable)",
    )
    parser.add_argument(
        "--exclude-caller",
        action="append",
        metavar="NAME",
        help="leave out the predictions this API key asked for or gave the current label of (repeatable)",
    )
    parser.add_argument("--format", choices=["csv", "jsonl"], required=True)
    parser.add_argument("--output", type=Path, help="a file to write (default: stdout)")
    return parser.parse_args(argv)


def open_stores(settings: Settings) -> LogStores:
    """The log's stores, refusing a database that does not exist or that this version cannot read."""
    engine = create_database_engine_checked(settings.log_database_url)
    try:
        revision = current_revision(engine)
    except sa.exc.DBAPIError as exc:
        raise ExportError(f"cannot read the prediction log: {str(exc.orig).strip().splitlines()[0]}") from None
    if revision != head_revision():
        raise ExportError(
            f"the prediction log is at schema revision {revision}, this version reads {head_revision()}: "
            "start the service once to migrate it"
        )
    return LogStores.over(engine)


def create_database_engine_checked(url: str) -> sa.Engine:
    path = sqlite_path(sa.make_url(url))
    if path is not None and not path.exists():
        raise ExportError(f"no prediction log at {path} (set CLF_DATA_DIR or CLF_DATABASE_URL)")
    return create_database_engine(url)


def export(args: argparse.Namespace, settings: Settings, out: IO[str], progress: bool) -> int:
    """Write the export; returns the number of predictions written."""
    now = datetime.now(UTC)
    try:
        since = None if args.since is None else parse_time(args.since, now)
        until = None if args.until is None else parse_time(args.until, now)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    keys = key_range(since, until)
    stores = open_stores(settings)
    try:
        if args.model not in stores.rollout.models():
            raise ExportError(f"model '{args.model}' has never been served with this prediction log")
        served = stores.rollout.versions(args.model)
        if args.version is not None and args.version not in served:
            raise ExportError(
                f"version '{args.version}' of '{args.model}' has never been served with this prediction log; "
                f"the versions that have: {', '.join(served)}"
            )
        versions = Versions()
        writer = JsonLinesWriter(out) if args.format == "jsonl" else _csv_writer(stores, versions, args, keys, out)
        with ExitStack() as stack:
            advance = (
                _progress_bar(stack, stores.predictions.count_logged(args.model, *keys, args.version))
                if progress
                else None
            )
            written = 0
            callers = Callers.of(args.caller, args.exclude_caller)
            for joined in rows(stores, versions, args.model, keys, args.version, args.labelled_only, callers):
                writer.write(joined)
                written += 1
                if advance is not None and written % PROGRESS_STEP == 0:
                    advance(PROGRESS_STEP)
        return written
    finally:
        stores.engine.dispose()


def _csv_writer(
    stores: LogStores, versions: Versions, args: argparse.Namespace, keys: tuple[str, str], out: IO[str]
) -> CsvWriter:
    """Columns from the first version in the range: its features, and its task's label fields."""
    first = stores.predictions.requests_page(args.model, *keys, 1, args.version, with_inputs=False)
    if not first:
        return CsvWriter(out, [], ["label"])
    info = versions.get(stores.rollout, args.model, first[0].version)
    if info is None:
        raise ExportError(f"the log does not know version {first[0].version} of {args.model}")
    return CsvWriter(out, info.feature_names, list(get_task(info.task).label_fields))


def _progress_bar(stack: ExitStack, total: int) -> Callable[[int], None]:
    """A progress bar on stderr for `total` predictions; returns the function that advances it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = stack.enter_context(
        Progress(
            TextColumn("exporting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
    )
    task = bar.add_task("export", total=total)
    return lambda done: bar.update(task, advance=done)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        settings = Settings()
    except ValidationError as exc:
        sys.stderr.write(f"python -m service.export: invalid CLF_* settings: {exc}\n")
        return 2
    sys.stderr.write(home.describe() + "\n")
    try:
        with ExitStack() as stack:
            out = sys.stdout if args.output is None else stack.enter_context(args.output.open("w", newline=""))
            written = export(args, settings, out, progress=sys.stderr.isatty())
    except (ExportError, InvalidModelError) as exc:
        if args.output is not None:
            args.output.unlink(missing_ok=True)  # no half-written file that looks like an export
        sys.stderr.write(f"python -m service.export: {exc}\n")
        return 2
    sys.stderr.write(f"exported {written} predictions of {args.model}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
