#!/usr/bin/env bash
# System packages the project's tests need beyond the Python venv.
# - prometheus: provides `promtool`, which tests/deploy/ uses to check and unit-test deploy/prometheus/.
# Idempotent: installs only what is missing and prints nothing when everything is already present.
# Run as root (CI and the dev machines are root; there is no sudo).
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends prometheus
