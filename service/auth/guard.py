"""Who may use a route: the keys a worker accepts, re-read when the keys file changes, and the check of one request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import DependencyUnavailableError, ForbiddenError, UnauthorizedError
from .keys import KeySet, KeysFileError, Scope, read_keys

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
FileSignature = tuple[int, int, int] | None  # inode, size, mtime in ns; None while there is no file


def _signature(path: Path) -> FileSignature:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class KeyRing:
    """The keys file as this worker last read it. Every worker reads the file itself and looks at it at most once
    every `check_seconds`; a changed file (inode, size or mtime: the CLI replaces it, an editor rewrites it) is read
    again before the request that noticed it is checked, so keys created or revoked take effect within that delay on
    every worker, with no restart.

    A file that cannot be read at start stops the worker (`KeysFileError`); one that breaks later refuses every key
    until it is fixed, rather than keeping keys that an edit meant to revoke. The file is read on the event loop: one
    stat a second, and a read of a few kilobytes when it changes, cost less than a hop to a thread.
    """

    def __init__(self, path: Path, check_seconds: float = CHECK_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.path = path
        self._check_seconds = check_seconds
        self._clock = clock
        self._seen = _signature(path)  # before reading: a change during the read is seen at the next check
        self._keys = KeySet(read_keys(path).keys)
        self._checked = clock()

    def current(self) -> KeySet:
        now = self._clock()
        if now - self._checked < self._check_seconds:
            return self._keys
        self._checked = now
        seen = _signature(self.path)
        if seen != self._seen:
            self._seen = seen
            self._keys = self._read()
        return self._keys

    def _read(self) -> KeySet:
        try:
            keys = read_keys(self.path).keys
        except KeysFileError as exc:
            logger.error("every API key is refused until the keys file is fixed: %s", exc)
            return KeySet(readable=False)
        logger.info("API keys read again from %s: %d keys", self.path, len(keys))
        return KeySet(keys)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request sends: `Authorization: Bearer <key>`, else `X-API-Key: <key>`."""
    scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key", "").strip() or None


class Guard:
    """Whether a request may use a route. Without a keys file every route is open but the admin ones, which
    `CLF_ADMIN=true` opens; with one, a route takes a key with its scope (`/metrics` only once some key has the
    `metrics` scope) and `CLF_ADMIN` no longer matters."""

    def __init__(self, keys: KeyRing | None, admin_without_keys: bool) -> None:
        self.keys = keys
        self.admin_without_keys = admin_without_keys

    @classmethod
    def configured(cls, keys_file: Path | None, admin: bool) -> Guard:
        return cls(KeyRing(keys_file) if keys_file is not None else None, admin)

    def check(self, headers: Mapping[str, str], scope: Scope, route: str) -> str | None:
        """The name of the key that lets this request use `route`, None when the route takes no key; raises
        `UnauthorizedError` (no key, or not one of ours), `ForbiddenError` (the key lacks the route's scope) or
        `DependencyUnavailableError` (the keys file cannot be read). No message quotes what the request sent."""
        if self.keys is None:
            if scope == "admin" and not self.admin_without_keys:
                raise ForbiddenError("the admin routes are off; set CLF_ADMIN=true, or use API keys with scope 'admin'")
            return None
        keys = self.keys.current()
        if scope == "metrics" and not keys.protects_metrics:
            return None
        if not keys.readable:
            raise DependencyUnavailableError("the service cannot read its API keys file; the service log says why")
        presented = presented_key(headers)
        if presented is None:
            raise UnauthorizedError(f"{route} takes an API key, sent as `Authorization: Bearer <key>` or `X-API-Key`")
        key = keys.match(presented)
        if key is None:
            raise UnauthorizedError(f"{route} takes an API key; the one sent is unknown (or revoked)")
        if scope not in key.scopes:
            has = ", ".join(key.scopes)
            raise ForbiddenError(f"{route} takes a key with scope '{scope}'; key '{key.name}' has {has}")
        return key.name
