#!/usr/bin/env bash
# The test command: installs, starts the local stack, lints, type-checks, runs every test.
# Stops the stack afterwards if it started it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

scripts/bootstrap.sh
# The status is read whole before it is searched: under pipefail, `status | grep -q` fails
# with SIGPIPE (141) when grep stops reading early, and the stack would never be stopped.
stack_status="$(scripts/stack.sh status)"
if [[ $stack_status == *stopped* ]]; then
  trap 'scripts/stack.sh stop' EXIT
fi
scripts/stack.sh start

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== import layers (lint-imports; contracts in pyproject.toml)"
.venv/bin/lint-imports --no-cache
echo "== pytest"
set -a
# shellcheck disable=SC1091
source .local/stack/stack.env
set +a
echo "== dg check defs"
VIRTUAL_ENV="$REPO/.venv" .venv/bin/dg check defs
.venv/bin/pytest "$@"
