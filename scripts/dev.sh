#!/usr/bin/env bash
# The Dagster UI (webserver + daemon) on the local stack: http://127.0.0.1:${DAGSTER_PORT:-3000}
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/local_env.sh
source scripts/local_env.sh
port="${DAGSTER_PORT:-3000}"
echo "[dev] Dagster UI: http://127.0.0.1:$port (Ctrl-C stops it)" >&2
# What the stack's simulator serves: SimulatorConfig's defaults (README "The local stack").
echo "[dev] the simulator has events for every week from 2024-01-01 on (200 users, 2,000 events a day)" >&2
echo "[dev] users' properties change only in the 8 weeks 2024-01-01 to 2024-02-19 (scripts/demo.sh loads the first two);" \
  "from 2024-02-26 on every user keeps their last version" >&2
# From DAGSTER_HOME, whose dagster.yaml links to the checkout's: run from the checkout,
# `dagster dev` warns that the dagster.yaml it finds there is not used, though it is.
cd "$DAGSTER_HOME"
DAGSTER_HOME="$(pwd -P)" # as Python sees the working directory, should the path hold a symlink
exec dagster dev -w "$REPO/workspace.yaml" -h 127.0.0.1 -p "$port"
