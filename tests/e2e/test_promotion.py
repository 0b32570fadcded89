"""Promotion under load against a real `bentoml serve` with two workers: no failed request, no answer from a third
version, both workers end on the promoted one without a restart, and a version that comes back goes on counting."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.servers import PROJECT
from models.catalog import evaluation_rows
from tests.e2e.conftest import (
    LOAD_CONNECTIONS,
    TIMEOUT,
    heartbeats,
    predict_load,
    serves_everywhere,
    serving,
    wait_until,
)

pytestmark = pytest.mark.e2e

MODEL = "breast_cancer"


def versions(home: Path) -> set[str]:
    """The versions of MODEL in a BentoML home."""
    listed = subprocess.run(
        [sys.executable, "-m", "bentoml", "models", "list", MODEL, "-o", "json"],
        env=_env(home),
        capture_output=True,
        text=True,
        check=True,
    )
    return {model["tag"].split(":")[1] for model in json.loads(listed.stdout)}


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def home_with_two_versions(e2e_env: dict[str, str], home: Path) -> tuple[str, str]:
    """A copy of the catalog in `home` with a second version of MODEL registered after the first (which `MODEL`
    then resolves to): (the first, the second)."""
    shutil.copytree(Path(e2e_env["BENTOML_HOME"]) / "models", home / "models")
    (old,) = versions(home)
    subprocess.run([sys.executable, "-m", "models", "catalog", MODEL], cwd=PROJECT, env=_env(home), check=True)
    (new,) = versions(home) - {old}
    return old, new


def test_a_promotion_under_load_fails_no_request_and_reaches_every_worker(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("serve-promotion")
    old, new = home_with_two_versions(e2e_env, home)
    rows = evaluation_rows(MODEL)[0][:8].tolist()
    settings = {"workers": "2", "models": MODEL, "admin": "true", "promotion_poll_seconds": "0.5"}
    with serving(e2e_env, home, **settings) as url:
        with predict_load(url, MODEL, rows) as answers:
            wait_until(lambda: len(answers) >= 100, "100 answers before the promotion", 600)
            assert {v for _, v in answers} == {new}
            promoted = httpx.post(f"{url}/admin/models/{MODEL}/promote", json={"version": old}, timeout=TIMEOUT)
            assert promoted.status_code == 200, promoted.text
            assert promoted.json()["previous"] == new
            at_promotion = len(answers)
            wait_until(
                lambda: serves_everywhere(url, MODEL, "binary", old, new),
                "every worker to serve the promoted version",
                600,
            )
            swapped = len(answers) + LOAD_CONNECTIONS  # the requests under way at the check may end on either version
            wait_until(lambda: len(answers) > max(swapped, at_promotion) + 100, "100 answers after the swaps", 600)
        failed = [code for code, _ in answers if code != 200]
        assert failed == [] and {v for _, v in answers} == {old, new}
        assert {v for _, v in answers[swapped:]} == {old}
        # once, in CI, one of these cards still named the replaced version after the check above had passed:
        # the cards are waited for (generously) until 20 in a row, from either worker, name the promoted one
        cards = lambda: {httpx.get(f"{url}/models/{MODEL}", timeout=TIMEOUT).json()["version"] for _ in range(20)}  # noqa: E731
        wait_until(lambda: cards() == {old}, "every worker's model card to name the promoted version", 600)


ROLLBACKS = 12


def counters(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every counter sample of `/metrics`, histograms' buckets and counts included."""
    text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        if family.type in ("counter", "histogram")
        for sample in family.samples
        if not sample.name.endswith(("_created", "_sum"))
    }


def test_promoting_back_and_forth_keeps_every_worker_and_no_counter_goes_back(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 16: a version that came back truncated its drift files (counters went back, and a write into the old
    mapping killed the worker with SIGBUS). Rollbacks under load: every answer 200, the same workers throughout,
    live, and no counter in any scrape below the previous scrape's."""
    home = tmp_path_factory.mktemp("serve-rollbacks")
    old, new = home_with_two_versions(e2e_env, home)
    rows = evaluation_rows(MODEL)[0][:4].tolist()
    settings = {"workers": "2", "models": MODEL, "admin": "true", "promotion_poll_seconds": "0.5"}
    with serving(e2e_env, home, **settings) as url:
        wait_until(lambda: len(heartbeats(url)) == 2, "both workers' heartbeats")
        workers = set(heartbeats(url))
        went_back: list[str] = []
        with predict_load(url, MODEL, rows) as answers:
            wait_until(lambda: len(answers) >= 50, "50 answers before the first promotion", 600)
            previous = counters(url)
            for step in range(ROLLBACKS):
                served, replaced = (old, new) if step % 2 == 0 else (new, old)
                promoted = httpx.post(f"{url}/admin/models/{MODEL}/promote", json={"version": served}, timeout=TIMEOUT)
                assert promoted.status_code == 200, promoted.text
                wait_until(lambda: serves_everywhere(url, MODEL, "binary", served, replaced), f"promotion {step}", 600)  # noqa: B023
                assert httpx.get(f"{url}/livez", timeout=TIMEOUT).status_code == 200
                current = counters(url)
                went_back += [f"{step}: {k} {previous[k]} -> {v}" for k, v in current.items() if v < previous.get(k, v)]
                previous = {**previous, **current}  # a series of a version not served now is not exported meanwhile
        assert went_back == []
        assert [code for code, _ in answers if code != 200] == []
        assert {v for _, v in answers} == {old, new}
        assert set(heartbeats(url)) == workers, "a worker was replaced"
