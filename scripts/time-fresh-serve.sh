#!/usr/bin/env bash
# Seconds from `make serve` to /readyz 200 in a fresh clone with empty pip and uv caches and no BentoML store,
# as on a fresh machine: pip's machine-wide config (local wheel folders, mirrors) is ignored, so only PyPI serves.
# Usage: scripts/time-fresh-serve.sh [REPO [REF [PORT]]]   (default: this repository, its HEAD, port 3901)
set -euo pipefail
repo=${1:-$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)}
ref=${2:-HEAD}
port=${3:-3901}
work=$(mktemp -d /tmp/fresh-serve.XXXXXX)
git clone -q "$repo" "$work/clone" && git -C "$work/clone" checkout -q "$(git -C "$repo" rev-parse "$ref")"
export PIP_CACHE_DIR=$work/pip-cache UV_CACHE_DIR=$work/uv-cache PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS BENTOML_HOME VIRTUAL_ENV
start=$(date +%s.%N)
setsid make -C "$work/clone" serve PORT="$port" >"$work/serve.log" 2>&1 &
server=$!
trap 'kill -- -"$server" 2>/dev/null || true' EXIT
until curl -fs -o /dev/null "http://127.0.0.1:$port/readyz"; do
  if ! kill -0 "$server" 2>/dev/null; then echo "make serve exited: see $work/serve.log" >&2; exit 1; fi
  sleep 1
done
end=$(date +%s.%N)
printf '%s at %s: make serve to /readyz 200 in %.0f s (log: %s)\n' "$repo" "$ref" "$(echo "$end - $start" | bc)" "$work/serve.log"
