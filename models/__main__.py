"""`python -m models train [NAME ...]` (re)registers catalog models; `ensure` registers only the missing ones."""

from __future__ import annotations

import argparse
import logging
import sys

from service.classifiers import InvalidModelError
from service.store import load_model

from .catalog import CATALOG

logger = logging.getLogger("models")


def servable(name: str) -> bool:
    """Whether the store's latest version of `name` loads (present, and trained with this scikit-learn) and
    carries what this release measures at registration (the calibration of its confidence)."""
    try:
        model = load_model(f"{name}:latest")
    except InvalidModelError as exc:
        logger.info("%s needs training: %s", name, exc)
        return False
    if "calibration" not in model.metadata:
        logger.info("%s needs training: registered before its confidence was calibrated", name)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__)
    parser.add_argument("command", choices=["train", "ensure", "list"])
    parser.add_argument("names", nargs="*", help=f"catalog models (default: all of {', '.join(CATALOG)})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    unknown = sorted(set(args.names) - set(CATALOG))
    if unknown:
        parser.error(f"unknown catalog models {unknown}; known: {', '.join(CATALOG)}")
    names = args.names or list(CATALOG)
    if args.command == "list":
        sys.stdout.write("\n".join(names) + "\n")
        return 0
    for name in names:
        if args.command == "ensure" and servable(name):
            continue
        CATALOG[name]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
