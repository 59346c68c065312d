#!/usr/bin/env bash
# The benchmark of issue 10, in one command:
#
#   bench/run.sh [--quick] [--only STAGES] [--profile] [--keep]
#
# Starts the local stack if it is not running (scripts/stack.sh start is idempotent), loads its
# environment, and runs every stage in a fresh process. See bench/README.md.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
scripts/bootstrap.sh
scripts/stack.sh start >&2
set -a
# shellcheck disable=SC1091
source .local/stack/stack.env
set +a
exec .venv/bin/python -m bench "$@"
