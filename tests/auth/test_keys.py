"""The keys file, the key ring that re-reads it, the guard's decisions, and `python -m service.auth`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from service.auth.__main__ import main
from service.auth.guard import Guard, KeyRing, presented_key
from service.auth.keys import (
    KEY_PREFIX,
    KeysFileError,
    create_key,
    digest,
    new_key,
    parse_scopes,
    read_keys,
    revoke_key,
)
from service.errors import DependencyUnavailableError, ForbiddenError, UnauthorizedError
from service.settings import Settings
from tests.monitoring.test_layering import loaded_after


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


# --- the command line --------------------------------------------------------------------------------------------


def test_create_prints_the_key_once_and_the_file_keeps_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    assert main(["create", "--name", "ci", "--scopes", "feedback,predict", "--file", str(path)]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert out == key + "\n" and key.startswith(KEY_PREFIX) and len(key) >= len(KEY_PREFIX) + 43
    assert key not in err and "once" in err
    stored = path.read_text()
    assert key not in stored and digest(key) in stored
    (record,) = json.loads(stored)["keys"]
    assert (record["name"], record["scopes"]) == ("ci", ["predict", "feedback"])
    assert os.stat(path).st_mode & 0o777 == 0o600

    assert main(["list", "--file", str(path)]) == 0
    listed, _ = capsys.readouterr()
    assert "ci" in listed and "predict,feedback" in listed
    assert key not in listed and digest(key) not in listed


def test_two_keys_are_never_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    for name in ("a", "b"):
        assert main(["create", "--name", name, "--scopes", "predict", "--file", str(path)]) == 0
    a, b = capsys.readouterr().out.split()
    assert a != b
    assert [key.sha256 for key in read_keys(path).keys] == [digest(a), digest(b)]


def test_the_file_comes_from_clf_api_keys_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "from-env.json"
    monkeypatch.setenv("CLF_API_KEYS_FILE", str(path))
    assert main(["create", "--name", "ci", "--scopes", "metrics"]) == 0
    assert [key.name for key in read_keys(path).keys] == ["ci"]


def test_revoke_removes_that_key_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    kept = create_key(path, "kept", ("predict",))
    create_key(path, "gone", ("admin",))
    assert main(["revoke", "--name", "gone", "--file", str(path)]) == 0
    assert [(key.name, key.sha256) for key in read_keys(path).keys] == [("kept", digest(kept))]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create", "--name", "ci", "--scopes", "predict"], "already has a key named 'ci'"),
        (["create", "--name", "../ci", "--scopes", "predict"], "not a key name"),
        (["revoke", "--name", "nobody"], "no key named 'nobody'; its keys: ci"),
    ],
)
def test_refused_commands_exit_1_and_leave_the_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    path = tmp_path / "keys.json"
    create_key(path, "ci", ("predict",))
    before = path.read_bytes()
    assert main([*argv, "--file", str(path)]) == 1
    assert message in capsys.readouterr().err
    assert path.read_bytes() == before


def test_an_unreadable_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--file", str(tmp_path / "missing.json")]) == 1
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["create", "--name", "ci", "--scopes", "predict", "--file", str(tmp_path / "bad.json")]) == 1
    assert (tmp_path / "bad.json").read_text() == "{not json"


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "--name", "ci", "--scopes", "predict,root"],
        ["create", "--name", "ci", "--scopes", ","],
        ["create", "--name", "ci"],
        ["list"],  # no --file and no CLF_API_KEYS_FILE
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    monkeypatch.delenv("CLF_API_KEYS_FILE", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_the_command_line_loads_neither_scikit_learn_nor_bentoml() -> None:
    modules = loaded_after("import service.auth.__main__")
    assert "service.auth.keys" in modules
    assert not [m for m in modules if m.split(".")[0] in ("sklearn", "bentoml", "numpy")]


# --- the keys file -----------------------------------------------------------------------------------------------


def test_scopes_parse_in_canonical_order() -> None:
    assert parse_scopes(" metrics, predict ,predict") == ("predict", "metrics")
    with pytest.raises(ValueError, match="among predict, feedback, admin, metrics"):
        parse_scopes("predict,Admin")


def keys_file(*records: dict[str, object], **document: object) -> str:
    """A keys file's text; each record a valid key unless overridden."""
    valid = {"name": "a", "sha256": "0" * 64, "scopes": ["predict"], "created_at": "2025-01-01T00:00:00Z"}
    return json.dumps({"keys": [valid | record for record in records], **document})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not a valid API keys file"),
        (keys_file(format=2), "format"),
        (keys_file({"sha256": "SECRET"}), "keys.0.sha256"),
        (keys_file({"scopes": ["root"]}), "keys.0.scopes"),
        (keys_file({"scopes": []}), "keys.0.scopes"),
        (keys_file({"name": "a b"}), "keys.0.name"),
        (keys_file({}, {"sha256": "1" * 64}), "more than once"),
        (keys_file({}, {"name": "b"}), "same hash"),
        (keys_file({"extra": 1}), "keys.0.extra"),
    ],
)
def test_an_invalid_file_says_where_without_quoting_it(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(KeysFileError, match=problem) as raised:
        read_keys(path)
    assert "SECRET" not in str(raised.value)


def test_a_key_matches_itself_only(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys = {name: create_key(path, name, ("predict",)) for name in ("a", "b", "c")}
    ring = KeyRing(path)
    for name, key in keys.items():
        found = ring.current().match(key)
        assert found is not None and found.name == name
    key = keys["b"]
    for near in (key[:-1], key + "x", key.upper(), f" {key}", new_key(), "", digest(key)):
        assert ring.current().match(near) is None


def test_concurrent_creations_keep_every_key(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "keys.json"
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda i: (f"k{i}", create_key(path, f"k{i}", ("predict",))), range(16)))
    stored = {key.name: key.sha256 for key in read_keys(path).keys}
    assert stored == {name: digest(key) for name, key in created}


# --- rotation ----------------------------------------------------------------------------------------------------


def test_the_ring_sees_created_and_revoked_keys_at_its_next_check(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old = create_key(path, "old", ("predict",))
    clock = Clock()
    ring = KeyRing(path, check_seconds=1.0, clock=clock)
    new = create_key(path, "new", ("predict",))
    clock.now += 0.5
    assert ring.current().match(new) is None  # looked at no more than once a second
    clock.now += 0.5
    assert ring.current().match(new) is not None
    revoke_key(path, "old")
    assert ring.current().match(old) is not None
    clock.now += 1.0
    assert ring.current().match(old) is None and ring.current().match(new) is not None


def test_a_file_that_breaks_refuses_every_key_until_fixed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keys.json"
    key = create_key(path, "ci", ("predict",))
    clock = Clock()
    guard = Guard(KeyRing(path, clock=clock), admin_without_keys=False)
    good = path.read_text()
    path.write_text(good[:-20])  # an edit in place, cut short
    clock.now += 1
    with caplog.at_level(logging.ERROR, logger="service.auth.guard"):
        with pytest.raises(DependencyUnavailableError, match="cannot read its API keys file"):
            guard.check(bearer(key), "predict", "POST /predict")
        with pytest.raises(DependencyUnavailableError):
            guard.check({}, "metrics", "GET /metrics")
    assert [r for r in caplog.records if "not a valid API keys file" in r.getMessage()]
    path.unlink()
    clock.now += 1
    with pytest.raises(DependencyUnavailableError):
        guard.check(bearer(key), "predict", "POST /predict")  # a deleted file turns nothing off
    path.write_text(good)
    clock.now += 1
    assert guard.check(bearer(key), "predict", "POST /predict") == "ci"


def test_a_missing_file_stops_the_worker_at_start(tmp_path: Path) -> None:
    with pytest.raises(KeysFileError, match="cannot read the API keys file"):
        Guard.configured(Settings(api_keys_file=tmp_path / "missing.json"))


# --- the guard ---------------------------------------------------------------------------------------------------


def test_without_keys_every_route_is_open_but_the_admin_ones() -> None:
    closed, opened = Guard(None, admin_without_keys=False), Guard(None, admin_without_keys=True)
    for scope in ("predict", "feedback", "metrics"):
        assert closed.check({}, scope, "route") is None
    with pytest.raises(ForbiddenError, match="CLF_ADMIN=true"):
        closed.check({}, "admin", "POST /admin/models/{name}/promote")
    assert opened.check({}, "admin", "POST /admin/models/{name}/promote", client="127.0.0.1") is None
    with pytest.raises(ForbiddenError, match="loopback"):
        opened.check({}, "admin", "POST /admin/models/{name}/promote", client="10.0.0.5")


def test_with_keys_the_scope_decides(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    client = create_key(path, "client", ("predict", "feedback"))
    guard = Guard.configured(Settings(api_keys_file=path, admin=True))  # CLF_ADMIN no longer opens the admin routes
    assert guard.check(bearer(client), "feedback", "POST /feedback") == "client"
    with pytest.raises(UnauthorizedError):
        guard.check({}, "metrics", "GET /metrics")  # no key has `metrics`: none may read them
    with pytest.raises(ForbiddenError, match="scope 'metrics'"):
        guard.check(bearer(client), "metrics", "GET /metrics")
    with pytest.raises(UnauthorizedError):
        guard.check({}, "admin", "POST /admin/models/{name}/promote", client="127.0.0.1")  # loopback needs a key too
    scraped = Guard.configured(Settings(api_keys_file=path, metrics_open=True))
    assert scraped.check({}, "metrics", "GET /metrics") is None
    with pytest.raises(UnauthorizedError, match="Authorization: Bearer"):
        guard.check({}, "predict", "POST /predict")
    with pytest.raises(UnauthorizedError, match="unknown"):
        guard.check(bearer(new_key()), "predict", "POST /predict")
    with pytest.raises(ForbiddenError, match="scope 'admin'; key 'client' has predict, feedback") as refused:
        guard.check(bearer(client), "admin", "POST /admin/models/{name}/promote")
    assert client not in str(refused.value)


@pytest.mark.parametrize(
    ("headers", "found"),
    [
        ({"authorization": "Bearer clf_abc"}, "clf_abc"),
        ({"authorization": "bearer  clf_abc "}, "clf_abc"),
        ({"x-api-key": " clf_abc"}, "clf_abc"),
        ({"authorization": "Bearer clf_abc", "x-api-key": "clf_other"}, "clf_abc"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"authorization": "Bearer "}, None),
        ({"x-api-key": ""}, None),
        ({}, None),
    ],
)
def test_the_key_comes_from_a_bearer_token_or_x_api_key(headers: dict[str, str], found: str | None) -> None:
    assert presented_key(headers) == found
