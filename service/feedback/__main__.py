"""`python -m service.feedback`: who sent the labels of the prediction log, and voiding one sender's labels.

  callers                                   each caller's labels (voided ones included), first and last received
  void --caller NAME [--since T]            void the labels NAME sent (since T: an ISO time or an age, 30d, 12h)

A caller is the name of the API key that sent a label (`(none)`: sent while the service took no keys). A voided
label stays in the prediction's history, marked with the time of the void, and stops counting: each prediction it
was about takes back its latest label that is not void, or has none, so realized metrics, `python -m service.export`
and `python -m models retrain` read the labels as if the voided ones had never come. Voiding cannot be undone by
this command. The database is the service's (`CLF_DATABASE_URL`, or the SQLite file in `CLF_DATA_DIR`).
Exit codes: 0 done, 2 a bad argument or a log that cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from pydantic import ValidationError

from ..export import ExportError, open_stores
from ..settings import Settings
from .feedback_store import CallerLabels
from .timerange import parse_time

USAGE = 2
NO_CALLER = "(none)"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m service.feedback", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("callers", help="each caller's labels, voided ones included")
    void = commands.add_parser("void", help="void the labels one caller sent")
    void.add_argument("--caller", required=True, help="the API key's name")
    void.add_argument("--since", help="only labels received since: an ISO 8601 time or an age (30d, 12h)")
    return root


def table(callers: list[CallerLabels]) -> str:
    """One line per caller: name, labels, voided, first and last received."""
    rows = [("caller", "labels", "voided", "first received", "last received")]
    rows += [
        (
            c.caller or NO_CALLER,
            str(c.labels),
            str(c.voided),
            c.first_received.isoformat(timespec="seconds"),
            c.last_received.isoformat(timespec="seconds"),
        )
        for c in callers
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
                   for row in rows)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    now = datetime.now(UTC)
    try:
        settings = Settings()
        since = None if getattr(args, "since", None) is None else parse_time(args.since, now)
        stores = open_stores(settings)
    except (ValidationError, ValueError, ExportError) as exc:
        sys.stderr.write(f"python -m service.feedback: {exc}\n")
        return USAGE
    try:
        if args.command == "callers":
            sys.stdout.write(table(stores.feedback.label_callers()))
            return 0
        result = stores.feedback.void_labels(args.caller, since, now)
    finally:
        stores.engine.dispose()
    sys.stdout.write(
        f"voided {result.voided} labels of {args.caller!r}"
        + ("" if since is None else f" received since {since.isoformat()}")
        + f": {result.restored} predictions back to an earlier label, {result.unlabelled} left unlabelled\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
