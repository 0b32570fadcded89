"""The scrape config's commented API key lines are a valid Prometheus configuration once uncommented."""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy.test_prometheus_rules import CONFIG, PROMETHEUS, assert_ok, load, promtool

COMMENTED_KEY = re.compile(
    r"^(    )# (authorization:\n)\1#   (type: Bearer\n)\1#   credentials_file: .*\n", flags=re.MULTILINE
)


def test_the_commented_authorization_block_is_valid_once_uncommented(tmp_path: Path) -> None:
    key_file = tmp_path / "classifier-service.key"
    key_file.write_text("clf_not-a-real-key\n")
    text, found = COMMENTED_KEY.subn(rf"\1\2\1  \3\1  credentials_file: {key_file}\n", CONFIG.read_text())
    assert found == 1, "deploy/prometheus/prometheus.yml lost its commented `authorization` block"
    text = text.replace("  - rules/", f"  - {PROMETHEUS}/rules/")
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    (job,) = load(config)["scrape_configs"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": str(key_file)}
    assert_ok(promtool("check", "config", str(config)))
