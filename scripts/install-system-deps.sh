#!/usr/bin/env bash
# System packages the project's tests need beyond the Python venv.
# - prometheus: `promtool` (tests/deploy/ checks and unit-tests deploy/prometheus/) and the server the e2e tests run.
# - postgresql: the server binaries (initdb, pg_ctl, postgres) of the throwaway clusters that the prediction-log tests
#   and the benchmark start (tests/postgres.py); the `main` cluster Debian may create is not used.
# - wrk: the load generator of `make bench`, whose command line tests/bench/ checks.
# - podman, runc, mmdebstrap: `make image` builds the image (its base from Debian's packages) and
#   tests/e2e/test_image.py runs it; runc because crun refuses the hybrid cgroups of the development machines.
# Idempotent: installs only what is missing and prints nothing when everything is already present.
# Run as root (CI and the dev machines are root; there is no sudo).
set -euo pipefail

missing=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    missing+=(prometheus)
fi
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    missing+=(postgresql)
fi
if ! command -v wrk >/dev/null 2>&1; then
    missing+=(wrk)
fi
for tool in podman runc mmdebstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
