#!/usr/bin/env bash
# The demo: on the local stack, export two weeks from the Amplitude simulator into SeaweedFS,
# build both tables from them, seed and migrate tmp_user_properties, and show what landed.
# Runs through the Dagster CLI against the PostgreSQL-backed instance (dagster.yaml), so the
# runs are visible afterwards in `scripts/dev.sh` (the Dagster UI).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

# shellcheck source=scripts/local_env.sh
source scripts/local_env.sh

WEEKS=(2024-01-01 2024-01-08)
for week in "${WEEKS[@]}"; do
  echo "== export $week"
  dagster asset materialize -m amplitude_pipeline --select amplitude_events --partition "$week"
  echo "== tables from $week"
  dagster asset materialize -m amplitude_pipeline --select permanent_user_properties,changeble_user_properties --partition "$week"
done
echo "== seed and migrate tmp_user_properties"
python scripts/seed_tmp_user_properties.py --rows 3000
dagster job execute -m amplitude_pipeline -j migrate_tmp_user_properties

python scripts/demo_report.py "${WEEKS[@]}"
echo
echo "Dagster UI on this stack: scripts/dev.sh  (then http://127.0.0.1:${DAGSTER_PORT:-3000})"
