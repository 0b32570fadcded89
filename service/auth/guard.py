"""Who may use a route: the keys a worker accepts, re-read when the keys file changes, and the check of one request."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DependencyUnavailableError, ForbiddenError, UnauthorizedError, UnsupportedMediaTypeError
from .keys import KeySet, KeysFileError, Scope, read_keys

if TYPE_CHECKING:
    from ..settings import Settings

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
            return KeySet(problem=str(exc))
        logger.info("API keys read again from %s: %d keys", self.path, len(keys))
        return KeySet(keys)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request sends: `Authorization: Bearer <key>`, else `X-API-Key: <key>`."""
    scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key", "").strip() or None


def is_loopback(address: str | None) -> bool:
    """Whether a client address, as the server gives it (an IP address, never a name), is this machine's loopback:
    127.0.0.0/8, ::1, or 127.x mapped into IPv6."""
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def caller(key_name: str | None, client: str | None) -> str:
    """Who calls a route, as the admin actions' log lines and records name it: `key:<name>` when the request was
    let in by a key, else `client:<address>`."""
    return f"key:{key_name}" if key_name is not None else f"client:{client or 'unknown'}"


def check_admin_request(headers: Mapping[str, str], takes_body: bool, route: str) -> None:
    """Refuses what a web page can make a browser send an admin route, key or no key.

    Any `Origin` header: browsers send one with every POST, PUT and DELETE, cross-site or not, and a page whose host
    name was rebound to this machine (DNS rebinding) has the service's own host name, so comparing it with `Host`
    would let that page through; programs (curl, scripts) send none. And a body not declared `application/json`:
    `text/plain` and forms are what a page sends without a CORS preflight. A route without a body takes no
    `Content-Type`, or JSON's.
    """
    if "origin" in headers:
        raise ForbiddenError(
            f"{route} refuses requests that carry an Origin header, as web browsers send them: a web page may not "
            "change what is served; call it from a program (curl, a script)"
        )
    content_type = headers.get("content-type")
    if content_type is None and not takes_body:
        return
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != "application/json":
        got = repr(media[:64]) if media else "no Content-Type"
        raise UnsupportedMediaTypeError(
            f"{route} takes a JSON body sent as `Content-Type: application/json`; got {got}"
        )


class Guard:
    """Whether a request may use a route. Without a keys file every route is open but the admin ones, which
    `CLF_ADMIN=true` opens to clients on this machine (loopback); with one, every route takes a key with its scope
    (`/metrics` none when `CLF_METRICS_OPEN=true`) and `CLF_ADMIN` no longer matters."""

    def __init__(self, keys: KeyRing | None, admin_without_keys: bool, metrics_open: bool = False) -> None:
        self.keys = keys
        self.admin_without_keys = admin_without_keys
        self.metrics_open = metrics_open

    @classmethod
    def configured(cls, settings: Settings) -> Guard:
        keys = KeyRing(settings.api_keys_file) if settings.api_keys_file is not None else None
        if keys is None and settings.admin:
            logger.warning(
                "CLF_ADMIN=true without API keys: the admin routes (promote, shadow) take no key. They answer "
                "clients on this machine only (loopback addresses) and refuse web browsers (any Origin header) and "
                "bodies that are not JSON, but any program or user on this machine can change what is served. Beyond "
                "a workstation, use API keys (CLF_API_KEYS_FILE) with the scope 'admin'."
            )
        return cls(keys, settings.admin, settings.metrics_open)

    def check(self, headers: Mapping[str, str], scope: Scope, route: str, client: str | None = None) -> str | None:
        """The name of the key that lets this request use `route`, None when the route takes no key; raises
        `UnauthorizedError` (no key, or not one of ours), `ForbiddenError` (the key lacks the route's scope; an
        admin route off, or called without keys from another machine than this one: `client` is the caller's
        address) or `DependencyUnavailableError` (the keys file cannot be read). No message quotes what the request
        sent."""
        if scope == "metrics" and self.metrics_open:
            return None
        if self.keys is None:
            if scope == "admin":
                self._check_admin_without_keys(route, client)
            return None
        keys = self.keys.current()
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

    def _check_admin_without_keys(self, route: str, client: str | None) -> None:
        if not self.admin_without_keys:
            raise ForbiddenError("the admin routes are off; set CLF_ADMIN=true, or use API keys with scope 'admin'")
        if not is_loopback(client):
            raise ForbiddenError(
                f"{route} answers clients on the service's own machine only (a loopback address) while it runs "
                f"without API keys; this request comes from {client or 'an unknown address'}: use API keys with "
                "scope 'admin' to call it from elsewhere"
            )

    def unready_reason(self) -> str | None:
        """Why the routes that take a key cannot answer (the keys file cannot be read), for `/readyz`; None when
        they can."""
        if self.keys is None:
            return None
        problem = self.keys.current().problem
        if problem is None:
            return None
        return f"every route that takes an API key answers 503 until the API keys file is fixed: {problem}"
