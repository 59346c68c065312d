#!/usr/bin/env bash
# The Dagster UI (webserver + daemon) on the local stack: http://127.0.0.1:3000
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
scripts/bootstrap.sh
scripts/stack.sh start
set -a
# shellcheck disable=SC1091
source .local/stack/stack.env
set +a
exec .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}"
