# Sourced by local_env.sh (and its test): Dagster marks `dagster asset materialize`,
# `dagster job execute` and `dagster dev` as superseded by `dg`. CONTRACT §3 names these
# commands, so their notice is silenced here, by message prefix. The filters name the built-in
# Warning class: Python reads PYTHONWARNINGS before site-packages is importable, so a Dagster
# class cannot be named there (and no interpreter imports anything for them).
# shellcheck shell=bash
_superseded="ignore:Function \`asset_materialize_command\` is superseded:Warning"
_superseded+=",ignore:Function \`job_execute_command\` is superseded:Warning"
_superseded+=",ignore:Function \`dev_command\` is superseded:Warning"
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}$_superseded"
unset _superseded
