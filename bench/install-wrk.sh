#!/usr/bin/env bash
# wrk, the HTTP load generator of `python -m bench` (Debian package `wrk`).
# Idempotent: installs only when missing, runs `apt-get update` only when the package lists lack wrk.
# Run as root (CI and the dev machines are root; there is no sudo).
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show wrk >/dev/null 2>&1; then
    apt-get update
fi
apt-get install -y --no-install-recommends wrk
