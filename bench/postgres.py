"""A throwaway PostgreSQL cluster on a loopback port, for the store suite, the e2e tests and the benchmark.

Debian's server binaries (`scripts/install-system-deps.sh` installs them) run as the `postgres` user when we are
root, since PostgreSQL refuses to run as root. The cluster lives in a fresh folder, listens on 127.0.0.1 only, and
is stopped and removed when the context ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .servers import free_port

DATABASE = "clf"
START_TIMEOUT_S = 300  # pg_ctl -w waits this long: a loaded machine has taken minutes to start servers


class PostgresUnavailable(RuntimeError):
    """The server binaries are not installed, or the cluster did not start."""


def server_bin() -> Path:
    """The folder of the newest installed PostgreSQL server's binaries."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not candidates:
        raise PostgresUnavailable("no PostgreSQL server binaries: run scripts/install-system-deps.sh (as root)")
    return candidates[-1].parent


def _as_owner(command: list[str], log: Path) -> None:
    """Run a server command as `postgres` when we are root, as ourselves otherwise; fail with its output."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    with log.open("ab") as out:
        result = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, check=False, timeout=START_TIMEOUT_S + 60
        )
    if result.returncode != 0:
        server_log = log.with_name("server.log")
        tail = log.read_text()[-2000:] + (server_log.read_text()[-2000:] if server_log.exists() else "")
        raise PostgresUnavailable(f"`{' '.join(command)}` exited {result.returncode}:\n{tail}")


@dataclass(frozen=True)
class Cluster:
    """A running throwaway cluster: its SQLAlchemy URL, and a stop and a start for tests of a database that goes
    away and comes back."""

    url: str
    binaries: Path
    data: Path
    options: str
    log: Path

    def stop(self) -> None:
        """Stop the server as an operator would (`pg_ctl stop -m fast`: open connections are terminated)."""
        self.pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        """Start it again, on the same port, with the same data."""
        self.pg_ctl("-l", str(self.log.with_name("server.log")), "-o", self.options, "-w", "-t",
                     str(START_TIMEOUT_S), "start")  # fmt: skip

    def pg_ctl(self, *args: str) -> None:
        _as_owner([str(self.binaries / "pg_ctl"), "-D", str(self.data), *args], self.log)


@contextlib.contextmanager
def throwaway_cluster(fsync: bool = True) -> Iterator[str]:
    """Start a cluster with one database; yields its SQLAlchemy URL (`postgresql+psycopg://...`).

    `fsync=False` trades crash safety of the test cluster for speed; the benchmark keeps it on.
    """
    with restartable_cluster(fsync) as cluster:
        yield cluster.url


@contextlib.contextmanager
def restartable_cluster(fsync: bool = True) -> Iterator[Cluster]:
    """`throwaway_cluster`, as a `Cluster` that a test can stop and start."""
    binaries = server_bin()
    root = Path(tempfile.mkdtemp(prefix="clf-postgres-"))
    data, log = root / "data", root / "commands.log"
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
        f"-c fsync={'on' if fsync else 'off'} -c max_connections=100"
    )
    cluster = Cluster(f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}", binaries, data, options, log)
    try:
        _as_owner([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], log)
        cluster.start()
        try:
            _as_owner([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", DATABASE], log)
            yield cluster
        finally:
            with contextlib.suppress(PostgresUnavailable):  # a test may have left it stopped
                cluster.pg_ctl("-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the cluster at `server_url`, dropped at the end; yields its SQLAlchemy URL."""
    import sqlalchemy as sa

    server = sa.make_url(server_url)
    name = f"test_{os.urandom(6).hex()}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()
