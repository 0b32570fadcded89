"""The admin routes from outside, in-process: what a web page or another machine can send them, candidates that
nobody compared or shadowed, and the record (log line and database row) of who did what."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import bentoml
import pytest
from starlette.testclient import TestClient

from service.auth.guard import Guard, is_loopback
from service.settings import Settings
from tests.auth.conftest import Keys
from tests.rollout.test_promotion import scores, two_versions
from tests.test_http import assert_error

ADMIN_CALLS = [  # (method, path suffix, body): every admin route
    ("POST", "promote", {"version": "v"}),
    ("PUT", "shadow", {"version": "v"}),
    ("DELETE", "shadow", None),
]


@pytest.fixture
def served(api: TestClient, reconfigure: Callable[..., None]) -> tuple[str, str, str]:
    """A model served as v1 with a candidate v2, admin routes on without keys: (name, v1, v2)."""
    name, v1, v2 = two_versions()
    reconfigure(models=name, admin=True)
    return name, v1, v2


def admin_actions(name: str) -> list[tuple[str, str, str | None, str | None]]:
    """(caller, action, from, to) of every recorded admin action on `name`, oldest first."""
    store = bentoml.get_current_service().log.stores.rollout
    return [(a.caller, a.action, a.from_version, a.to_version) for a in store.admin_actions(name)]


# --- what a browser can send -----------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", "http://testserver", "null"])
@pytest.mark.parametrize(("method", "route", "body"), ADMIN_CALLS)
def test_a_request_with_an_origin_is_refused(
    api: TestClient, served: tuple[str, str, str], origin: str, method: str, route: str, body: Any
) -> None:
    """Browsers send `Origin` with every POST, PUT and DELETE, their own site's included (a DNS-rebound page is on
    the service's own host name): any Origin is refused, and nothing moves."""
    name, v1, v2 = served
    body = None if body is None else {"version": v2}
    response = api.request(method, f"/admin/models/{name}/{route}", json=body, headers={"Origin": origin})
    error = assert_error(response, 403, "forbidden")
    assert "Origin" in error["message"]
    assert scores(api, name)[0] == v1 and admin_actions(name) == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
def test_an_admin_body_that_is_not_json_is_refused(
    api: TestClient, served: tuple[str, str, str], content_type: str | None
) -> None:
    """The probe's promotion: a `text/plain` body, which a page can send without a CORS preflight."""
    name, v1, v2 = served
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = f'{{"version": "{v2}", "force": true}}'
    for method, route in (("POST", "promote"), ("PUT", "shadow")):
        response = api.request(method, f"/admin/models/{name}/{route}", content=body, headers=headers)
        error = assert_error(response, 415, "unsupported_media_type")
        assert "application/json" in error["message"]
    assert scores(api, name)[0] == v1 and admin_actions(name) == []
    charset = {"Content-Type": "Application/JSON; charset=utf-8"}
    assert api.post(f"/admin/models/{name}/promote", content=body, headers=charset).status_code == 200
    assert api.delete(f"/admin/models/{name}/shadow").status_code == 200  # no body: no Content-Type to check


def test_the_document_declares_the_refusals(api: TestClient) -> None:
    paths = api.get("/docs.json").json()["paths"]
    declared = {(method, path): set(operation["responses"]) for path, methods in paths.items()
                for method, operation in methods.items()}  # fmt: skip
    assert {"403", "415"} <= declared[("put", "/admin/models/{name}/shadow")]
    assert {"403", "415"} <= declared[("delete", "/admin/models/{name}/shadow")]
    assert {"403", "409", "415"} <= declared[("post", "/admin/models/{name}/promote")]


# --- who can reach it without keys -------------------------------------------------------------------------------


def test_without_keys_the_admin_routes_answer_this_machine_only(api: TestClient, served: tuple[str, str, str]) -> None:
    name, v1, v2 = served
    elsewhere = TestClient(api.app, client=("192.0.2.7", 40000))  # the running service, seen from another machine
    for method, route, body in ADMIN_CALLS:
        response = elsewhere.request(method, f"/admin/models/{name}/{route}", json=body)
        error = assert_error(response, 403, "forbidden")
        assert "loopback" in error["message"] and "192.0.2.7" in error["message"]
    assert elsewhere.get(f"/models/{name}").status_code == 200  # the other routes take no key: open to all
    assert scores(api, name)[0] == v1


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("::ffff:10.0.0.5", False),
        ("0.0.0.0", False),
        ("localhost", False),  # an address, never a name: a server gives addresses
        ("testclient", False),
        (None, False),  # a server that does not say (a Unix socket)
    ],
)
def test_loopback_clients_are_told_by_their_address(address: str | None, local: bool) -> None:
    assert is_loopback(address) is local


def test_admin_without_keys_is_announced_at_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service.auth.guard"):
        Guard.configured(Settings(admin=True))
    (line,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "CLF_ADMIN=true" in line.getMessage() and "loopback" in line.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="service.auth.guard"):
        Guard.configured(Settings(admin=False))
    assert caplog.records == []


# --- candidates ----------------------------------------------------------------------------------------------------


def test_a_candidate_nobody_compared_or_shadowed_is_promoted_only_by_force(
    api: TestClient, served: tuple[str, str, str]
) -> None:
    name, v1, v2 = served
    refused = api.post(f"/admin/models/{name}/promote", json={"version": v2})
    error = assert_error(refused, 409, "conflict", "version")
    assert "candidate" in error["message"] and '"force": true' in error["message"]
    assert scores(api, name)[0] == v1 and admin_actions(name) == []
    assert_error(api.post(f"/admin/models/{name}/promote", json={"version": v2, "force": "yes"}), 400, "invalid_input")
    forced = api.post(f"/admin/models/{name}/promote", json={"version": v2, "force": True})
    assert forced.status_code == 200, forced.text
    assert scores(api, name)[0] == v2
    assert api.post(f"/admin/models/{name}/promote", json={"version": v1}).status_code == 200  # not a candidate


def test_a_shadowed_candidate_is_promoted_without_force(api: TestClient, served: tuple[str, str, str]) -> None:
    name, v1, v2 = served
    assert api.put(f"/admin/models/{name}/shadow", json={"version": v2}).status_code == 200
    promoted = api.post(f"/admin/models/{name}/promote", json={"version": v2})
    assert promoted.status_code == 200, promoted.text
    assert scores(api, name)[0] == v2


# --- the record --------------------------------------------------------------------------------------------------


def admin_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "admin action" in r.getMessage()]


def test_every_admin_action_is_logged_and_recorded_with_its_caller(
    api: TestClient, served: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    name, v1, v2 = served
    with caplog.at_level(logging.WARNING):
        assert api.put(f"/admin/models/{name}/shadow", json={"version": v2}).status_code == 200
        assert api.delete(f"/admin/models/{name}/shadow").status_code == 200
        assert api.post(f"/admin/models/{name}/promote", json={"version": v2}).status_code == 200
    me = "client:127.0.0.1"
    assert admin_actions(name) == [(me, "shadow", None, v2), (me, "stop_shadow", v2, None), (me, "promote", v1, v2)]
    lines = admin_lines(caplog)
    assert len(lines) == 3
    for line, (action, before, after) in zip(
        lines, [("shadow", "none", v2), ("stop_shadow", v2, "none"), ("promote", v1, v2)], strict=True
    ):
        assert f"admin action {action} by {me}: model {name} from {before} to {after}" == line


def test_with_keys_the_record_names_the_key(
    api: TestClient, keyed: Callable[..., Keys], caplog: pytest.LogCaptureFixture
) -> None:
    name, v1, v2 = two_versions()
    keys = keyed(models=name, ops=("admin",))
    headers = {"Authorization": f"Bearer {keys.issued['ops']}"}
    with caplog.at_level(logging.WARNING):
        answer = api.post(f"/admin/models/{name}/promote", json={"version": v2, "force": True}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert admin_actions(name) == [("key:ops", "promote", v1, v2)]
    assert admin_lines(caplog) == [f"admin action promote by key:ops: model {name} from {v1} to {v2}"]
    assert keys.issued["ops"] not in caplog.text
