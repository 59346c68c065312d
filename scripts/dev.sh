#!/usr/bin/env bash
# The Dagster UI (webserver + daemon) on the local stack: http://127.0.0.1:3000
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/local_env.sh
source scripts/local_env.sh
exec dagster dev -w workspace.yaml -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}"
