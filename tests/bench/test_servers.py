"""The launcher the benchmarks and the e2e tests share (`bench.servers`), on small stand-in servers: ready when its
path answers 200, a server that exits fails with its log, and a stop takes the whole process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench import servers
from bench.servers import ServerError, isolated_env, launched, stop

# a server that starts a child of its own (a stand-in for a worker) and serves files on the port it is given
SERVER = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), SimpleHTTPRequestHandler).serve_forever()
"""


def serve_files(port: int) -> list[str]:
    return [sys.executable, "-c", SERVER, str(port)]


def test_a_server_is_yielded_ready_and_stopped_with_its_children(tmp_path: Path) -> None:
    with launched("files", serve_files, tmp_path / "files.log", cwd=tmp_path, ready_path="/") as server:
        (child,) = psutil.Process(server.process.pid).children()
        assert server.url.startswith("http://127.0.0.1:") and server.ready_s > 0
        assert len(server.tree()) == 2
    assert server.process.returncode is not None
    assert not child.is_running()


def test_a_server_that_exits_before_it_is_ready_fails_with_its_log(tmp_path: Path) -> None:
    def command(port: int) -> list[str]:
        return [sys.executable, "-c", "import sys; sys.exit('no models to serve')"]

    failed = pytest.raises(ServerError, match="(?s)broken exited with 1.*no models to serve")
    with failed, launched("broken", command, tmp_path / "broken.log", cwd=tmp_path):
        pass


def test_a_server_that_ignores_sigterm_is_killed_and_said_so(tmp_path: Path) -> None:
    ignoring = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(3600)"
    )
    process = subprocess.Popen([sys.executable, "-c", ignoring], stdout=subprocess.PIPE, start_new_session=True)
    assert process.stdout is not None and process.stdout.readline() == b"up\n"  # the handler is in place
    assert stop(process, grace_s=1.0) is False
    assert process.returncode == -signal.SIGKILL


def test_a_sigkill_stops_a_child_in_a_session_of_its_own() -> None:
    """Circus starts each BentoML worker in a session of its own: a signal to the arbiter's group misses it."""
    detached = "import os, sys, time; os.setsid(); print(os.getpid(), flush=True); time.sleep(3600)"
    parent = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {detached!r}]); time.sleep(3600)"
    process = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, start_new_session=True)
    assert process.stdout is not None
    worker = psutil.Process(int(process.stdout.readline()))
    assert os.getpgid(worker.pid) != os.getpgid(process.pid)
    assert stop(process, signal.SIGKILL)
    assert not worker.is_running()


def test_a_server_gets_its_own_home_and_no_inherited_metrics_folder(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "home", {"PROMETHEUS_MULTIPROC_DIR": "/shared", "CLF_WORKERS": "2", "PATH": "/bin"})
    assert env == {"BENTOML_HOME": str(tmp_path / "home"), "BENTOML_DO_NOT_TRACK": "True", "CLF_WORKERS": "2",
                   "PATH": "/bin"}  # fmt: skip


def test_a_free_port_is_bindable_and_outside_the_range_the_kernel_hands_out() -> None:
    """BentoML's arbiter takes its ZeroMQ ports from `bind(0)`: a server port from that range could be taken by
    the server itself before it binds it (seen as "Address already in use" on the server's own port)."""
    ephemeral = servers.ephemeral_ports()
    ports = {servers.free_port() for _ in range(20)}
    assert all(servers.PORTS_FROM <= port < ephemeral.start for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
