"""API keys on a real server with two workers: a key created after start works on every worker, a revoked one stops
working, and no key reaches the server's log (access log on). Which worker answered comes from the access log. And
the admin routes without keys: what a web page sends is refused, and the server's log says who promoted what."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench.servers import PROJECT
from tests.e2e.conftest import serving, wait_until

pytestmark = pytest.mark.e2e

REQUESTS = 12  # each on a new connection, so that both workers answer some


def auth(keys: Path, *args: str) -> str:
    """Runs `python -m service.auth` on `keys`; its standard output."""
    command = [sys.executable, "-m", "service.auth", *args, "--file", str(keys)]
    return subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=True).stdout.strip()


def statuses(url: str, key: str | None) -> set[int]:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return {httpx.get(f"{url}/models", headers=headers, timeout=60).status_code for _ in range(REQUESTS)}


def workers_answering(log: Path, since: int, status: int) -> set[str]:
    """The workers (BentoML's index) whose access log, after offset `since`, shows a `GET /models` with `status`."""
    line = rf"\[entry_service:classifier-service:(\d+)\] .*method=GET,path=/models,.*\(status={status},"
    return set(re.findall(line, log.read_text()[since:]))


def test_every_worker_takes_a_new_key_and_refuses_a_revoked_one(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("serve-auth")
    keys = home / "keys.json"
    first = auth(keys, "create", "--name", "first", "--scopes", "predict")
    settings = {"workers": "2", "models": "digits", "api_keys_file": str(keys), "access_log": "true"}
    log = home / "serve.log"
    with serving(e2e_env, home, **settings) as url:
        assert statuses(url, None) == {401}
        created = len(log.read_text())
        second = auth(keys, "create", "--name", "second", "--scopes", "predict")
        wait_until(
            lambda: statuses(url, second) == {200} and workers_answering(log, created, 200) == {"1", "2"},
            "both workers to take the key created after start",
        )
        revoked = len(log.read_text())
        auth(keys, "revoke", "--name", "second")
        wait_until(
            lambda: statuses(url, second) == {401} and workers_answering(log, revoked, 401) == {"1", "2"},
            "both workers to refuse the revoked key",
        )
        assert statuses(url, first) == {200}
    assert first not in log.read_text() and second not in log.read_text()


def test_admin_without_keys_refuses_a_page_and_logs_every_action(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The probe of the security review: a page's promotion (`text/plain`, with its `Origin`) moved the served
    version and left no line in the log. Now the page is refused, and a promotion from a script is logged."""
    home = tmp_path_factory.mktemp("serve-admin")
    log = home / "serve.log"
    with serving(e2e_env, home, models="digits", admin="true") as url:
        version = httpx.get(f"{url}/models/digits", timeout=60).json()["version"]
        promote = f"{url}/admin/models/digits/promote"
        body = json.dumps({"version": version, "force": True})
        page = {"Content-Type": "text/plain", "Origin": "http://evil.example"}
        assert httpx.post(promote, content=body, headers=page, timeout=60).status_code == 403
        assert httpx.post(promote, content=body, headers={"Content-Type": "text/plain"}, timeout=60).status_code == 415
        assert httpx.post(promote, json={"version": version}, timeout=60).status_code == 200
        line = f"admin action promote by client:127.0.0.1: model digits from {version} to {version}"
        wait_until(lambda: line in log.read_text(), "the promotion's line in the server's log")
    started = log.read_text()
    assert re.search(r"WARNING.*CLF_ADMIN=true without API keys", started), started[-3000:]
