"""The prediction log's database: one engine per process, SQLite or PostgreSQL, migrated at start-up under a lock.

SQLite (the default, a file under `CLF_DATA_DIR`) runs in WAL mode, so the workers of one server read while one
of them writes, with `synchronous=FULL`, so a committed transaction survives a crash of the machine, not only of
the process. Writers take SQLite's write lock when their transaction begins (`BEGIN IMMEDIATE`), so two workers
never deadlock upgrading a read lock; readers never block writers. PostgreSQL gets a small pool per process.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
PAGE_BYTES = 16 * 1024
POSTGRES_MIGRATION_LOCK = 7_262_611  # pg_advisory_lock id shared by every replica migrating the same database
WRITE = {"clf_write": True}  # execution options of a connection that writes (see `writing`)


def sqlite_path(url: sa.URL) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database or another dialect)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def create_database_engine(url: str) -> sa.Engine:
    """The engine of this process (create it in the worker, after the fork)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(parsed, pool_size=4, max_overflow=4, pool_pre_ping=True, pool_recycle=1800)


def _sqlite_connect(dbapi_connection: Any, _: Any) -> None:
    # we issue BEGIN ourselves (below): the driver's own implicit transactions would start deferred ones
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        # logged requests are rows of kilobytes: larger pages write them with fewer overflow pages (30 % faster for
        # 20 KB rows here). Takes effect when the file is created; an existing log keeps its page size.
        f"page_size={PAGE_BYTES}",
        "journal_mode=WAL",
        "synchronous=FULL",
        f"busy_timeout={BUSY_TIMEOUT_MS}",
        # SQLite's default page cache (2 MiB per connection), not a larger one: a worker holds several connections
        # (the writer, the query threads, the scrape), and 64 MiB caches grew its RSS with the log for as long as the
        # soak ran (docs/soak.md), for 7 % more /feedback items/s (6,250 vs 5,800; the target is 5,000)
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    immediate = connection.get_execution_options().get("clf_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_PROCESS_WRITERS: weakref.WeakKeyDictionary[sa.Engine, threading.Lock] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def writing(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that writes: it holds SQLite's write lock from its start; committed on a clean exit.

    SQLite takes one writer at a time: the threads of one process queue on a lock here, not in SQLite's busy
    handler, which sleeps in steps of up to 100 ms and made a write's wait many times the write.
    """
    with contextlib.ExitStack() as stack:
        if engine.dialect.name == "sqlite":
            stack.enter_context(_PROCESS_WRITERS.setdefault(engine, threading.Lock()))
        connection = stack.enter_context(engine.connect().execution_options(**WRITE))
        stack.enter_context(connection.begin())
        yield connection


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`, holding a lock so that workers and replicas starting together take turns."""
    with _migration_lock(engine) as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({POSTGRES_MIGRATION_LOCK})")
            connection.commit()
            try:
                yield connection
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({POSTGRES_MIGRATION_LOCK})")
                connection.commit()
        return
    path = sqlite_path(engine.url)
    with contextlib.ExitStack() as stack:
        if path is not None:  # one machine: a file lock beside the database
            lock = stack.enter_context(path.with_name(path.name + ".migrate-lock").open("a"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield stack.enter_context(engine.connect().execution_options(**WRITE))
