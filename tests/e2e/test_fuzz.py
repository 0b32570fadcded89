"""Schemathesis against a served instance, from the service's own OpenAPI document (`GET /docs.json`): no generated
request gets a 5xx, and every answer is one the document declares (status, content type, body schema)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.e2e.conftest import serving

pytestmark = pytest.mark.e2e

# `make test` runs at least MIN_CASES; `make fuzz` asks for more, with the stateful phase (the document's links:
# predict, then feedback on its ids, then GET /predictions/{id})
MIN_CASES = int(os.environ.get("FUZZ_MIN_CASES", "2000"))
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES_PER_OPERATION", "400"))
PHASES = os.environ.get("FUZZ_PHASES", "examples,coverage,fuzzing")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("serve-fuzz")
    report = home / "fuzz.json"
    with serving(e2e_env, home, admin="true") as url:
        document = httpx.get(f"{url}/docs.json", timeout=60).json()
        run = subprocess.run(
            [
                sys.executable, "-m", "schemathesis.cli", "run", f"{url}/docs.json", "--checks", CHECKS,
                "--phases", PHASES, "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "1",
                "--request-timeout", "300", "--workers", "2", "--generation-database", "none", "--no-color",
                "--report", "json", "--report-json-path", str(report),
            ],
            capture_output=True, text=True, check=False, timeout=6 * 3600,
        )  # fmt: skip
    print(run.stdout[-4000:])  # the summary, for `make fuzz`
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    result = json.loads(report.read_text())
    operations = sum(len(methods) for methods in document["paths"].values())
    assert result["operations"]["tested"] == operations
    assert result["test_cases"]["generated"] >= MIN_CASES, result["test_cases"]
    assert result["failures"] == [] and result["errors"] == []
