"""`python -m models`: train a model from your own table, or manage the default catalog.

  train --name NAME --task TASK --data FILE --target COLUMN [...]   train, tune, evaluate and register a new version
  retrain --name NAME [--since 30d] [--data FILE]                   a candidate version from the labelled log
          [--caller KEY] [--exclude-caller KEY]                     (only, or without, what an API key sent)
  compare NAME:A NAME:B [--since 7d] [--format json]                two versions on the same labelled predictions
  promote NAME:VERSION [--force]                                    serve this version on every worker (or roll back)
  replay --url URL --name NAME --data FILE --target COLUMN         predict a labelled file's rows, send its labels
  list [NAME ...]                                                   the store's versions: stage, task, trained-at
  list --catalog                                                    the catalog's names
  ensure [NAME ...]                                                 register the catalog models the store lacks
  catalog [NAME ...]                                                (re)register catalog models
  example-data reviews|reviews-drifted FILE                         write docs/loop.md's example table as CSV

`train` and `retrain` exit with code 2, registering nothing, when the data cannot make the model asked for.
`compare` exits with 0 when B beats A by the margin, 1 when it does not, 2 when they cannot be compared.
`replay` exits with 2 when the service refuses a request or a label.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from service import home
from service.card import InvalidCardError, ModelCard
from service.classifiers import InvalidModelError
from service.classifiers.evaluation import CALIBRATION_FOLDS
from service.store import CANDIDATE, LoadedModel, check_stored, is_candidate, load_model

from .catalog import CATALOG, SPLIT_RECIPE
from .dataset import LABEL_SEP, PATH_SEP, TASKS, DataError, prepare, read_table
from .examples import EXAMPLES, write_example

logger = logging.getLogger("models")
BAD_DATA_EXIT = 2


def servable(name: str) -> bool:
    """Whether the store's latest version of `name` would load, by its stored record (present, trained with this
    scikit-learn, its files there: `check_stored`, no estimator read, as the workers load each model anyway) and
    carries what this release measures at registration (the calibration of its confidence, the reference row counts
    of the alert thresholds); a catalog model's, also whether its rows were split as its recipe splits them now
    (`SPLIT_RECIPE`) and its calibration cross-fitted."""
    try:
        card = check_stored(f"{name}:latest")
    except InvalidModelError as exc:
        logger.info("%s needs training: %s", name, exc)
        return False
    if card.calibration is None:
        logger.info("%s needs training: registered before its confidence was calibrated", name)
        return False
    if card.reference_rows is None:
        logger.info("%s needs training: registered before its reference row counts were kept", name)
        return False
    if name in CATALOG and card.training.split != SPLIT_RECIPE:
        logger.info("%s needs training: its rows were split otherwise than %s", name, SPLIT_RECIPE)
        return False
    if name in CATALOG and card.calibration.folds != CALIBRATION_FOLDS:
        logger.info("%s needs training: its confidence calibration was not cross-fitted", name)
        return False
    return True


@dataclass(frozen=True)
class StoredVersion:
    name: str
    version: str
    stage: str  # `candidate` (served only once promoted) or `-`
    task: str
    trained_at: str


def stored_versions() -> list[StoredVersion]:
    """Every version in the store, by model name, oldest first."""
    import bentoml

    found = []
    for model in sorted(bentoml.models.list(), key=lambda m: (m.tag.name, m.info.creation_time)):
        found.append(
            StoredVersion(
                name=model.tag.name,
                version=str(model.tag.version),
                stage=CANDIDATE if is_candidate(model) else "-",
                task=str(model.info.labels.get("task", "?")),
                trained_at=_trained_at(model.info.metadata),
            )
        )
    return found


def _trained_at(metadata: Mapping[str, Any]) -> str:
    """When a stored version was trained, to the second as the card and `GET /models` show it without the fraction;
    `?` for a version whose card does not parse (listed all the same: `list` shows what the store holds)."""
    try:
        return ModelCard.parse(metadata).trained_at.isoformat(timespec="seconds")
    except InvalidCardError:
        return "?"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = root.add_subparsers(dest="command", required=True)
    for command, text in (("ensure", "register the missing ones"), ("catalog", "(re)register")):
        sub = commands.add_parser(command, help=f"catalog models: {text}")
        sub.add_argument("names", nargs="*", help=f"catalog models (default: all of {', '.join(CATALOG)})")
    listing = commands.add_parser("list", help="every version in the store: stage, task, trained-at")
    listing.add_argument("names", nargs="*", help="only these models (default: all)")
    listing.add_argument("--catalog", action="store_true", help="the catalog's model names instead")
    example = commands.add_parser("example-data", help="write one of docs/loop.md's example tables as CSV")
    example.add_argument("example", choices=list(EXAMPLES))
    example.add_argument("path", type=Path, help="the CSV file to write")
    train = commands.add_parser("train", help="train a model from a CSV, JSON Lines or Parquet file")
    train.add_argument("--name", required=True, help="the served model name")
    train.add_argument("--task", required=True, choices=TASKS)
    train.add_argument("--data", required=True, type=Path, help="a .csv, .jsonl or .parquet file")
    train.add_argument("--target", required=True, help="the column to predict")
    train.add_argument("--positive-class", help="binary: the class the threshold is tuned for")
    train.add_argument("--label-sep", default=LABEL_SEP, help=f"multilabel: a row's labels' separator ({LABEL_SEP})")
    train.add_argument("--multilabel-strategy", choices=["per-label", "joint"], default="per-label",
                       help="one binary model per label, or one model for all labels")  # fmt: skip
    train.add_argument("--path-sep", default=PATH_SEP, help=f"hierarchical: a path's nodes' separator ({PATH_SEP})")
    train.add_argument("--categorical", default="", help="comma-separated columns to treat as categories")
    train.add_argument("--text", default="", help="comma-separated columns to treat as free text")
    train.add_argument("--drop", default="", help="comma-separated columns to leave out")
    train.add_argument("--estimator", choices=["logistic", "hist-gradient-boosting", "random-forest"],
                       default="logistic")  # fmt: skip
    train.add_argument("--class-weight", choices=["balanced"], help="weight classes by inverse frequency")
    train.add_argument("--time-column", help="validate on the newest rows by this column (also left out as a feature)")
    train.add_argument("--validation-share", type=float, default=0.2, help="share of rows validated on (0.2)")
    objectives = "f1, precision-at-recall=R or recall-at-precision=P"
    train.add_argument("--optimize", default="f1", help=f"what tuned thresholds maximise: {objectives}")
    retrain = commands.add_parser("retrain", help="a candidate version trained on the labelled prediction log")
    retrain.add_argument("--name", required=True, help="the served model")
    retrain.add_argument("--since", help="labelled predictions made since: an age (30d, 12h) or an ISO time")
    retrain.add_argument("--data", type=Path, help="more training rows: the model's features and its target column")
    retrain.add_argument("--caller", action="append", metavar="NAME",
                         help="only the predictions this API key asked for or labelled (repeatable)")  # fmt: skip
    retrain.add_argument("--exclude-caller", action="append", metavar="NAME",
                         help="leave out the predictions this API key asked for or labelled (repeatable)")  # fmt: skip
    compare = commands.add_parser("compare", help="two versions on the same recent labelled predictions")
    compare.add_argument("a", help="NAME:VERSION, the reference (e.g. the served one)")
    compare.add_argument("b", help="NAME:VERSION, the challenger (e.g. a candidate)")
    compare.add_argument("--since", help="labelled predictions made since: an age (7d) or an ISO time")
    compare.add_argument("--margin", type=float, default=0.0, help="how much more accuracy B needs (default 0)")
    compare.add_argument("--format", choices=["table", "json"], default="table")
    replay = commands.add_parser("replay", help="predict a labelled file's rows on a running service, send its labels")
    replay.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:3000")
    replay.add_argument("--name", required=True, help="the served model")
    replay.add_argument("--data", required=True, type=Path, help="a .csv, .jsonl or .parquet file")
    replay.add_argument("--target", required=True, help="the column of labels (the other columns are sent as rows)")
    replay.add_argument("--label-sep", default=LABEL_SEP, help=f"multilabel: a row's labels' separator ({LABEL_SEP})")
    replay.add_argument("--path-sep", default=PATH_SEP, help=f"hierarchical: a path's nodes' separator ({PATH_SEP})")
    promote = commands.add_parser("promote", help="serve a version on every worker sharing the log, without restart")
    promote.add_argument("tag", help="NAME:VERSION; an older version rolls back")
    promote.add_argument(
        "--force", action="store_true", help="promote a candidate that was neither compared nor shadowed"
    )
    return root


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@contextlib.contextmanager
def progress_bar(total: int) -> Iterator[Callable[[str], None]]:
    """Steps on a progress bar when stderr is a terminal; log lines otherwise."""
    if not sys.stderr.isatty():
        yield lambda step: logger.info("%s", step)
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("reading", total=total)

        def advance(step: str) -> None:
            bar.update(task, advance=1, description=step)

        yield advance


def train_command(args: argparse.Namespace) -> int:
    from .card import card
    from .training import TrainingOptions, train

    options = TrainingOptions(
        estimator=args.estimator,
        class_weight=args.class_weight,
        multilabel_strategy=args.multilabel_strategy,
        validation_share=args.validation_share,
        optimize=args.optimize,
    )
    try:
        with progress_bar(total=4) as progress:
            table = read_table(args.data)
            progress("preparing")
            data = prepare(
                table, args.task, args.target, positive_class=args.positive_class, label_sep=args.label_sep,
                path_sep=args.path_sep, categorical=_names(args.categorical), text=_names(args.text),
                drop=_names(args.drop), time_column=args.time_column,
            )  # fmt: skip
            if data.positive_class_line() is not None:
                logger.info("%s", data.positive_class_line())
            trained = train(args.name, data, options, progress)
    except DataError as exc:
        return _not_registered(exc)
    sys.stdout.write(card(trained))
    return 0


def _not_registered(exc: DataError) -> int:
    sys.stderr.write(f"error: {exc}\nnothing was registered\n")
    return BAD_DATA_EXIT


def retrain_command(args: argparse.Namespace) -> int:
    from service.export import Callers
    from service.settings import Settings

    from .card import card
    from .retrain import retrain

    callers = Callers.of(args.caller, args.exclude_caller)
    try:
        with progress_bar(total=4) as progress:
            trained = retrain(_served(args.name), args.since, args.data, Settings(), progress, callers)
    except DataError as exc:
        return _not_registered(exc)
    sys.stdout.write(card(trained))
    sys.stdout.write(f"\n{trained.tag} is a candidate: compare it, shadow it, then promote it to serve it\n")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from service.rollout.admin import cli_caller, compared
    from service.settings import Settings

    from .compare import as_json, compare, table
    from .logdata import open_log

    settings = Settings()
    try:
        a, b = _served(args.a), _served(args.b)
        result = compare(a, b, args.since, args.margin, settings)
        compared(
            open_log(settings).rollout, a.name, a.version, b.version, cli_caller()
        )  # a candidate compared: promotable
    except DataError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return BAD_DATA_EXIT
    sys.stdout.write(orjson.dumps(as_json(result)).decode() + "\n" if args.format == "json" else table(result))
    return 0 if result.b_is_better else 1


def promote_command(args: argparse.Namespace) -> int:
    """Records the promotion as the admin route does (`service.rollout.admin.promote`), with caller `cli:<user>`."""
    from service.errors import ConflictError
    from service.rollout import admin
    from service.rollout.plan import RolloutPlan
    from service.settings import Settings
    from service.store import default_version
    from service.tags import LATEST, names_a_version

    from .logdata import open_log

    settings = Settings()
    try:
        if not names_a_version(args.tag.partition(":")[2]):
            raise DataError(f"name the version to promote ('{args.tag.partition(':')[0]}:VERSION')")
        model = _served(args.tag)
        store = open_log(settings).rollout
        # what serves now, by the service's own rule (pinned, else promoted, else latest)
        version = RolloutPlan.configured(settings.models, settings.shadow).version(model.name, store.rollout())
        served = default_version(model.name) if version == LATEST else version
        admin.promote(store, model, admin.cli_caller(), served, args.force)
    except (DataError, ConflictError) as exc:
        sys.stderr.write(f"error: {getattr(exc, 'message', exc)}\n")
        return BAD_DATA_EXIT
    sys.stdout.write(
        f"promoted {model.tag}: the workers serving '{model.name}' follow within "
        f"{settings.promotion_poll_seconds:g} s\n"
    )
    return 0


def replay_command(args: argparse.Namespace) -> int:
    from .replay import HttpClient, replay

    try:
        table = read_table(args.data)
        done = replay(HttpClient(args.url), args.name, table, args.target, args.label_sep, args.path_sep)
    except DataError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return BAD_DATA_EXIT
    share = f" ({done.right / done.labelled:.3f})" if done.labelled else ""
    sys.stdout.write(
        f"{done.predictions} rows of {args.data} predicted by {args.name}:{done.version}, {done.labelled} labels "
        f"accepted; its decisions were right on {done.right}{share}\n"
    )
    return 0


def list_command(args: argparse.Namespace) -> int:
    """The store's versions, oldest first per model, as a table (or the catalog's names with `--catalog`)."""
    if args.catalog:
        sys.stdout.write("\n".join(CATALOG) + "\n")
        return 0
    found = stored_versions()
    missing = [name for name in args.names if name not in {v.name for v in found}]
    if missing:
        sys.stderr.write(f"error: no version of {', '.join(missing)} in the BentoML store {home.bentoml_home()[0]}\n")
        return BAD_DATA_EXIT
    if not found:
        sys.stderr.write(f"the BentoML store {home.bentoml_home()[0]} holds no model: make catalog registers some\n")
        return 0
    rows = [(v.name, v.version, v.stage, v.task, v.trained_at) for v in found if not args.names or v.name in args.names]
    header = ("model", "version", "stage", "task", "trained at")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
    return 0


def _served(tag: str) -> LoadedModel:
    try:
        return load_model(tag)
    except InvalidModelError as exc:
        raise DataError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info(home.describe())
    commands = {
        "train": train_command,
        "retrain": retrain_command,
        "compare": compare_command,
        "promote": promote_command,
        "replay": replay_command,
        "list": list_command,
    }
    if args.command in commands:
        return commands[args.command](args)
    if args.command == "example-data":
        rows = write_example(args.example, args.path)
        sys.stdout.write(f"wrote {rows} rows of the example table '{args.example}' to {args.path}\n")
        return 0
    names = getattr(args, "names", None) or list(CATALOG)
    unknown = sorted(set(names) - set(CATALOG))
    if unknown:
        parser().error(f"unknown catalog models {unknown}; known: {', '.join(CATALOG)}")
    for name in names:
        if args.command == "ensure" and servable(name):
            continue
        CATALOG[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
