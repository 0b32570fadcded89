"""The keys file: API keys by name, each stored as its SHA-256 with its scopes, and the edits the CLI makes to it.

A key is `clf_` followed by `secrets.token_urlsafe(32)`: 256 random bits (the prefix lets secret scanners and people
recognise one). The file keeps only each key's SHA-256. Slow hashes (bcrypt, scrypt, argon2) exist to make guessing
a low-entropy *password* from its hash expensive; nobody can enumerate 2**256 random keys whatever the hash costs, so
one SHA-256, cheap enough to run on every request, protects these as well as bcrypt would.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scope = Literal["predict", "feedback", "admin", "metrics"]
SCOPES: tuple[Scope, ...] = ("predict", "feedback", "admin", "metrics")
KEY_PREFIX = "clf_"
KEY_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
FILE_FORMAT: Literal[1] = 1


class KeysFileError(Exception):
    """The keys file is missing, unreadable or not a valid keys file."""


class KeyNameError(Exception):
    """A `create` for a name the file already has, or a `revoke` for one it lacks."""


class ApiKey(BaseModel):
    """One key as the file stores it: never the key itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=f"^{KEY_NAME}$")
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    scopes: tuple[Scope, ...] = Field(min_length=1)
    created_at: datetime

    @field_validator("scopes")
    @classmethod
    def _in_canonical_order(cls, value: tuple[Scope, ...]) -> tuple[Scope, ...]:
        return tuple(scope for scope in SCOPES if scope in value)


class KeysDocument(BaseModel):
    """The file's content."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = FILE_FORMAT
    keys: tuple[ApiKey, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> KeysDocument:
        names = [key.name for key in self.keys]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"key names appear more than once: {repeated}")
        if len({key.sha256 for key in self.keys}) < len(self.keys):
            raise ValueError("two keys have the same hash")
        return self


@dataclass(frozen=True)
class KeySet:
    """The keys a worker accepts. `problem`: why the file could not be read; then no key is accepted."""

    keys: tuple[ApiKey, ...] = ()
    problem: str | None = None

    @property
    def readable(self) -> bool:
        return self.problem is None

    def match(self, key: str) -> ApiKey | None:
        """The stored key whose hash is the hash of `key`, or None. Compares with every stored hash in constant
        time, so that neither the bytes of a guess nor the position of a match show in the time taken."""
        presented = digest(key).encode()
        found = None
        for stored in self.keys:
            if hmac.compare_digest(presented, stored.sha256.encode()):
                found = stored
        return found


def digest(key: str) -> str:
    """The hex SHA-256 of a key, as the file stores it."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    """A fresh key: the prefix and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """Scopes from a comma-separated list; raises ValueError naming the unknown ones."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCOPES]
    if unknown or not names:
        raise ValueError(f"scopes are a comma-separated list among {', '.join(SCOPES)}; got {text!r}")
    return tuple(scope for scope in SCOPES if scope in names)


def read_keys(path: Path) -> KeysDocument:
    """The keys file's content; raises KeysFileError saying what is wrong (never quoting the file)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeysFileError(f"cannot read the API keys file {path}: {exc.strerror}") from None
    try:
        return KeysDocument.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise KeysFileError(f"{path} is not a valid API keys file: {problems}") from None


def create_key(path: Path, name: str, scopes: tuple[Scope, ...]) -> str:
    """Adds a new key named `name` to the file (created if absent) and returns the key: the only time it exists
    outside the caller's hands."""
    if re.fullmatch(KEY_NAME, name) is None:
        raise KeyNameError(f"{name!r} is not a key name: 1 to 64 of letters, digits, '_.-', from a letter or digit")
    key = new_key()
    record = ApiKey(name=name, sha256=digest(key), scopes=scopes, created_at=datetime.now(UTC))
    with _editing(path) as document:
        if any(stored.name == name for stored in document.keys):
            raise KeyNameError(f"{path} already has a key named {name!r}; revoke it first or pick another name")
        _write(path, KeysDocument(keys=(*document.keys, record)))
    return key


def revoke_key(path: Path, name: str) -> None:
    """Removes the key named `name` from the file."""
    with _editing(path, must_exist=True) as document:
        kept = tuple(stored for stored in document.keys if stored.name != name)
        if len(kept) == len(document.keys):
            known = ", ".join(stored.name for stored in document.keys) or "none"
            raise KeyNameError(f"{path} has no key named {name!r}; its keys: {known}")
        _write(path, KeysDocument(keys=kept))


@contextlib.contextmanager
def _editing(path: Path, must_exist: bool = False) -> Iterator[KeysDocument]:
    """The file's content under an exclusive lock (a `.lock` file beside it), so that two edits at once cannot
    lose one another's key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield read_keys(path) if must_exist or path.exists() else KeysDocument()


def _write(path: Path, document: KeysDocument) -> None:
    """Replaces the file in one rename: a worker reading it at any moment sees the old keys or the new ones, never
    half a file. Keeps an existing file's permissions; a new one is readable by its owner only."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    text = orjson.dumps(document.model_dump(mode="json"), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
