# Sourced by demo.sh and dev.sh: install, start the local stack, export its environment.
# shellcheck shell=bash
scripts/bootstrap.sh
scripts/stack.sh start
set -a
# shellcheck disable=SC1091
source .local/stack/stack.env
set +a
export PATH="$PWD/.venv/bin:$PATH"
# shellcheck source=scripts/dagster_cli_env.sh
source scripts/dagster_cli_env.sh
