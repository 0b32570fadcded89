"""`python -m service.auth`: create, list and revoke API keys in the keys file.

  create --name NAME --scopes predict,feedback [--file PATH]   a new key, printed once on stdout (only its hash is kept)
  list [--file PATH]                                           every key's name, scopes and creation time
  revoke --name NAME [--file PATH]                             remove a key: refused by every worker within a second

The file is `--file`, else `CLF_API_KEYS_FILE`. Scopes: predict, feedback, admin, metrics. Running workers pick up
every change by themselves. Exit codes: 0 done, 1 refused (a name taken or unknown, an unreadable file), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..settings import Settings
from .keys import SCOPES, ApiKey, KeyNameError, KeysFileError, Scope, create_key, parse_scopes, read_keys, revoke_key

REFUSED = 1


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m service.auth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = root.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="who or what uses the key (unique in the file)")
    create.add_argument("--scopes", required=True, type=scopes, help=f"comma-separated among {', '.join(SCOPES)}")
    commands.add_parser("list", help="the keys in the file (never the keys themselves)")
    revoke = commands.add_parser("revoke", help="remove a key")
    revoke.add_argument("--name", required=True)
    for command in commands.choices.values():
        command.add_argument("--file", type=Path, help="the keys file (default: $CLF_API_KEYS_FILE)")
    return root


def scopes(text: str) -> tuple[Scope, ...]:
    try:
        return parse_scopes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def keys_file(args: argparse.Namespace) -> Path:
    path: Path | None = args.file or Settings().api_keys_file
    if path is None:
        parser().error("name the keys file with --file or CLF_API_KEYS_FILE")
    return path


def table(keys: tuple[ApiKey, ...]) -> str:
    """One line per key: name, creation time, scopes."""
    rows = [("name", "created", "scopes")]
    rows += [(key.name, key.created_at.isoformat(timespec="seconds"), ",".join(key.scopes)) for key in keys]
    width = max(len(name) for name, _, _ in rows)
    return "".join(f"{name:<{width}}  {created:<25}  {granted}\n" for name, created, granted in rows)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path = keys_file(args)
    try:
        if args.command == "create":
            key = create_key(path, args.name, args.scopes)
            sys.stderr.write(
                f"created key {args.name!r} with scopes {','.join(args.scopes)} in {path}; it is printed once, below,"
                " and only its hash is kept\n"
            )
            sys.stdout.write(key + "\n")
        elif args.command == "revoke":
            revoke_key(path, args.name)
            sys.stdout.write(f"revoked key {args.name!r} in {path}\n")
        else:
            sys.stdout.write(table(read_keys(path).keys))
    except (KeyNameError, KeysFileError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return REFUSED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
