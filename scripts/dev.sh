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
# `dg dev` from the project root: the code location of [tool.dg] (amplitude_pipeline.definitions),
# the instance of DAGSTER_HOME (local_env.sh), a webserver and a daemon. The same UI as
# `dagster dev -w workspace.yaml`, which loads the same module.
DAGSTER_HOME="$(cd "$DAGSTER_HOME" && pwd -P)" # as Python sees it, should the path hold a symlink
export DAGSTER_HOME VIRTUAL_ENV="$REPO/.venv"
exec "$REPO/.venv/bin/dg" dev --host 127.0.0.1 --port "$port"
