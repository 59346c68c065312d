#!/usr/bin/env bash
# Mutation testing (issue 11): mutmut over one package folder, then its score per file.
#
#   scripts/mutation.sh transform               # transform/ against its unit tests (~5 min on 2 cores)
#   scripts/mutation.sh load [MUTANT_GLOB...]   # load/ against the load and corpus integration tests
#                                               # on the local stack (started if needed); hours in full
#
# Globs narrow the run to some functions, e.g. 'amplitude_pipeline.load.writer.*' or
# 'amplitude_pipeline.load.event_files.xǁ_BatchCommitterǁ*' (`mutmut results` names them).
# mutmut runs in a scratch copy of the tree (.local/mutation/<target>/), so the working tree never
# holds mutants and edits made during a long run do not mix into it. The copy is removed at the
# end; KEEP_MUTANTS=1 keeps it, to read a survivor's diff with
# `cd .local/mutation/<target> && ../../../.venv/bin/mutmut show NAME`.
# The per-file table is also written to .local/mutation/<target>-report.md, mutmut's output to
# .local/mutation/<target>-mutmut.log.
# MUTATION_CHILDREN (default 2) mutants run at once.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

target="${1:-}"
case "$target" in
  transform) other_tests=(amplitude_pipeline_tests/load/ amplitude_pipeline_tests/corpus/) ;;
  load) other_tests=(amplitude_pipeline_tests/transform/) ;;
  *)
    echo "usage: scripts/mutation.sh transform|load [MUTANT_GLOB...]" >&2
    exit 2
    ;;
esac
shift
globs=("$@")
[ ${#globs[@]} -gt 0 ] || globs=("amplitude_pipeline.$target.*")

scripts/bootstrap.sh
if [ "$target" = load ]; then
  scripts/stack.sh start
  set -a
  # shellcheck disable=SC1091
  source .local/stack/stack.env
  set +a
fi

work="$REPO/.local/mutation/$target"
rm -rf "$work"
mkdir -p "$work"
if [ "${KEEP_MUTANTS:-0}" != 1 ]; then
  trap 'rm -rf "$work"' EXIT
fi
cp -r pyproject.toml field_mappings.yaml amplitude_pipeline amplitude_pipeline_tests amplitude_simulator "$work"/
find "$work" -name __pycache__ -type d -prune -exec rm -rf {} +

# pyproject.toml's [tool.mutmut] selects the transform, load and corpus tests; the other target's
# tests are deselected, so that each mutant is tried against this target's own tests only.
deselect=""
for tests in "${other_tests[@]}"; do deselect+=" --deselect $tests"; done
cd "$work"
log="$REPO/.local/mutation/$target-mutmut.log"
PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-}$deselect" "$REPO/.venv/bin/mutmut" run \
  --max-children "${MUTATION_CHILDREN:-2}" "${globs[@]}" >"$log" 2>&1 || {
  status=$?
  tail -n 40 "$log" >&2
  echo "mutmut run failed ($status); its output: $log" >&2
  exit "$status"
}
"$REPO/.venv/bin/python" "$REPO/scripts/mutation_report.py" "amplitude_pipeline/$target" \
  | tee "$REPO/.local/mutation/$target-report.md"
