#!/usr/bin/env bash
# The local stack: PostgreSQL (DWH + Dagster instance), SeaweedFS as S3, the Amplitude simulator,
# a Prometheus Pushgateway for the runs' metrics.
#
#   scripts/stack.sh start|stop|status|env|ports|restart-postgres
#
# Everything lives under .local/stack of this checkout (PostgreSQL's data may live under
# /var/tmp when the checkout is not reachable by the `postgres` user, see pg_data_dir).
# `start` is idempotent. It refuses, before it starts anything, every port another process
# listens on (refuse_held_ports), and calls a service ready only once the process it started is
# the one listening on each of its ports (wait_until_listening); if it fails, it stops what it
# had started. `stop` stops only the processes this script started (their pid files).
# `env` prints the environment (CONTRACT §2) that points the pipeline at this stack.
# `ports` prints every port with the STACK_* variable that sets it.
# `restart-postgres` restarts PostgreSQL with `-m immediate` (a crash: no checkpoint, every
# connection dropped, recovery on start), as the fault-injection tests do mid-load.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$REPO/.local/stack}"
VENV_BIN="${VENV_BIN:-$REPO/.venv/bin}"

# Every port is set by its STACK_* variable (`ports` lists them); resolve_ports refuses a value
# that is not a port, and two services on one port, before anything starts.
PG_PORT="${STACK_PG_PORT:-55432}"
S3_PORT="${STACK_S3_PORT:-18333}"
SIM_PORT="${STACK_SIM_PORT:-18080}"
PUSHGATEWAY_PORT="${STACK_PUSHGATEWAY_PORT:-19091}"
# SeaweedFS runs master, volume, filer, S3 and admin in one process; every port is set so
# that nothing collides with another stack or a default-port service on the machine.
WEED_MASTER_PORT="${STACK_WEED_MASTER_PORT:-19333}"
WEED_VOLUME_PORT="${STACK_WEED_VOLUME_PORT:-19340}"
WEED_FILER_PORT="${STACK_WEED_FILER_PORT:-18888}"
WEED_ADMIN_PORT="${STACK_WEED_ADMIN_PORT:-23646}"
# Its gRPC ports default to SeaweedFS's convention, the HTTP port + 10000 (resolve_ports); an
# HTTP port above 55535 needs its gRPC port set. Out of range, weed would bind random ports.
# The admin's gRPC port is always the admin port + 10000 (see resolve_ports).
WEED_MASTER_GRPC_PORT="${STACK_WEED_MASTER_GRPC_PORT:-}"
WEED_VOLUME_GRPC_PORT="${STACK_WEED_VOLUME_GRPC_PORT:-}"
WEED_FILER_GRPC_PORT="${STACK_WEED_FILER_GRPC_PORT:-}"
S3_GRPC_PORT="${STACK_S3_GRPC_PORT:-}"
WEED_ADMIN_GRPC_PORT=
# (variable, shell variable) of every port that can be set, in the order `ports` prints them.
PORTS=(
  "STACK_PG_PORT PG_PORT" "STACK_S3_PORT S3_PORT" "STACK_SIM_PORT SIM_PORT"
  "STACK_PUSHGATEWAY_PORT PUSHGATEWAY_PORT" "STACK_WEED_MASTER_PORT WEED_MASTER_PORT"
  "STACK_WEED_VOLUME_PORT WEED_VOLUME_PORT" "STACK_WEED_FILER_PORT WEED_FILER_PORT"
  "STACK_WEED_ADMIN_PORT WEED_ADMIN_PORT" "STACK_S3_GRPC_PORT S3_GRPC_PORT"
  "STACK_WEED_MASTER_GRPC_PORT WEED_MASTER_GRPC_PORT" "STACK_WEED_VOLUME_GRPC_PORT WEED_VOLUME_GRPC_PORT"
  "STACK_WEED_FILER_GRPC_PORT WEED_FILER_GRPC_PORT"
)

PG_USER=pipeline
PG_PASSWORD=pipeline-local-password
S3_ACCESS_KEY=pipeline-local-access
S3_SECRET_KEY=pipeline-local-secret
S3_BUCKET_NAME=amplitude-raw
SIM_API_KEY=sim-api-key
SIM_SECRET_KEY=sim-secret-key

PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"

log() { printf '[stack] %s\n' "$*" >&2; }

is_port() { [[ $1 =~ ^[1-9][0-9]{0,4}$ ]] && (($1 <= 65535)); }

# Gives each unset gRPC port its default and checks every port. Any problem: each is named,
# and the script exits before it starts or writes anything.
resolve_ports() {
  local problems=() entry variable name value base
  local -A owner=()
  for entry in "${PORTS[@]}"; do
    read -r variable name <<<"$entry"
    value="${!name}"
    if [ -z "$value" ]; then # a gRPC port left unset
      base="${name%_GRPC_PORT}_PORT"
      is_port "${!base}" || continue # the HTTP port's own problem is reported
      value=$((${!base} + 10000))
      printf -v "$name" '%s' "$value"
      if ! is_port "$value"; then
        problems+=("$variable is unset and defaults to ${variable%_GRPC_PORT}_PORT + 10000 = $value, above 65535: set $variable")
        continue
      fi
    elif ! is_port "$value"; then
      problems+=("$variable=$value is not a port (an integer from 1 to 65535)")
      continue
    fi
    if [ -n "${owner[$value]:-}" ]; then
      problems+=("$variable and ${owner[$value]} are both $value: two services cannot share a port")
    else
      owner[$value]=$variable
    fi
  done
  # weed mini's maintenance worker dials the admin's gRPC at the admin port + 10000, whatever
  # -admin.port.grpc says (SeaweedFS 4.48): that port cannot move on its own.
  if is_port "$WEED_ADMIN_PORT"; then
    WEED_ADMIN_GRPC_PORT=$((WEED_ADMIN_PORT + 10000))
    if ! is_port "$WEED_ADMIN_GRPC_PORT"; then
      problems+=("STACK_WEED_ADMIN_PORT=$WEED_ADMIN_PORT is above 55535: the admin's gRPC port is always STACK_WEED_ADMIN_PORT + 10000 (SeaweedFS's worker dials it there)")
    elif [ -n "${owner[$WEED_ADMIN_GRPC_PORT]:-}" ]; then
      problems+=("${owner[$WEED_ADMIN_GRPC_PORT]} is $WEED_ADMIN_GRPC_PORT, the admin's gRPC port (STACK_WEED_ADMIN_PORT + 10000): two services cannot share a port")
    fi
  fi
  if [ ${#problems[@]} -gt 0 ]; then
    log "refusing to run '$cmd': bad port settings"
    local problem
    for problem in "${problems[@]}"; do log "  $problem"; done
    exit 2
  fi
}

print_ports() {
  local entry variable name
  for entry in "${PORTS[@]}"; do
    read -r variable name <<<"$entry"
    printf '%s=%s\n' "$variable" "${!name}"
  done
}

# The server's options: `start` and `restart-postgres` must run it the same way.
pg_server_options() {
  echo "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
}

as_postgres() {
  # From /: the postgres user may not be allowed into the current directory.
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# initdb and pg_ctl refuse to run as root, so as root the cluster belongs to `postgres`,
# which must be able to traverse every folder above its data directory. A checkout under
# a root-only home is not traversable: the cluster then lives under /var/tmp, keyed by the
# checkout's path so that two checkouts never share one.
pg_data_dir() {
  if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$REPO" 2>/dev/null; then
    echo "$STACK_DIR/pg/data"
  else
    echo "/var/tmp/amplitude-pipeline-$(printf '%s' "$REPO" | sha1sum | cut -c1-12)/data"
  fi
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Every port the stack binds, one line each: the service that binds it, the port, and the
# setting that moves it.
stack_ports() {
  cat <<PORTS
postgres $PG_PORT STACK_PG_PORT
seaweedfs $S3_PORT STACK_S3_PORT
seaweedfs $WEED_MASTER_PORT STACK_WEED_MASTER_PORT
seaweedfs $WEED_VOLUME_PORT STACK_WEED_VOLUME_PORT
seaweedfs $WEED_FILER_PORT STACK_WEED_FILER_PORT
seaweedfs $WEED_ADMIN_PORT STACK_WEED_ADMIN_PORT
seaweedfs $S3_GRPC_PORT STACK_S3_GRPC_PORT
seaweedfs $WEED_MASTER_GRPC_PORT STACK_WEED_MASTER_GRPC_PORT
seaweedfs $WEED_VOLUME_GRPC_PORT STACK_WEED_VOLUME_GRPC_PORT
seaweedfs $WEED_FILER_GRPC_PORT STACK_WEED_FILER_GRPC_PORT
seaweedfs $WEED_ADMIN_GRPC_PORT the admin's gRPC port, STACK_WEED_ADMIN_PORT + 10000
simulator $SIM_PORT STACK_SIM_PORT
pushgateway $PUSHGATEWAY_PORT STACK_PUSHGATEWAY_PORT
PORTS
}

# Who listens on a port is read from procfs (Linux only; no other tool needed): the kernel's
# table of TCP sockets gives the listening sockets' inodes, and a process's open files show
# which of them it holds. A listener on any address counts: the stack's clients must never
# reach another process. Root sees every process; another user sees only their own, and
# nobody sees into another pid namespace, so a holder may be unknown.

# The inodes of the TCP sockets (IPv4 or IPv6) listening on port $1.
listening_socket_inodes() {
  local port_suffix table tables=()
  printf -v port_suffix ':%04X' "$1"
  for table in /proc/net/tcp /proc/net/tcp6; do # no tcp6 without IPv6
    if [ -r "$table" ]; then tables+=("$table"); fi
  done
  awk -v port="$port_suffix" '$4 == "0A" && substr($2, length($2) - 4) == port { print $10 }' "${tables[@]}"
}

# "inode pid" for every visible process holding one of the sockets $@ (inodes).
socket_holders() {
  local inode expression=()
  for inode in "$@"; do expression+=(-o -lname "socket:\[$inode\]"); done
  find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 \( "${expression[@]:1}" \) -printf '%l %h\n' 2>/dev/null |
    sed -E 's|^socket:\[([0-9]+)\] /proc/([0-9]+)/fd$|\1 \2|' | sort -u
}

# Whether process $2 is $1 or in its process group (services start with setsid, as group leaders).
in_process_group() {
  local leader=$1 pid=$2 stat fields
  [ "$pid" = "$leader" ] && return 0
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  read -r -a fields <<<"${stat##*) }" # after the command name, which may hold spaces
  [ "${fields[2]:-}" = "$leader" ]
}

describe_process() {
  local command
  command="$(cat "/proc/$1/comm" 2>/dev/null)" || command="exited"
  printf 'pid %s (%s)' "$1" "$command"
}

# Who else listens on port $1: nothing when no process but $2's group does (or nobody listens;
# $2 empty: no process of ours), else "pid N (name)" for each other holder, or a note that
# the holder cannot be seen. Only the command's name is shown: a command line may hold a secret.
other_listeners() {
  local port=$1 ours=$2 inode pid others=() unseen=""
  local -a inodes
  local -A seen=()
  mapfile -t inodes < <(listening_socket_inodes "$port")
  [ ${#inodes[@]} -gt 0 ] || return 0
  while read -r inode pid; do
    seen[$inode]=1
    if [ -z "$ours" ] || ! in_process_group "$ours" "$pid"; then others+=("$(describe_process "$pid")"); fi
  done < <(socket_holders "${inodes[@]}")
  for inode in "${inodes[@]}"; do
    if [ -z "${seen[$inode]:-}" ]; then
      unseen="a process this user cannot see (another user's or in another pid namespace)"
    fi
  done
  [ ${#others[@]} -gt 0 ] || [ -n "$unseen" ] || return 0
  local holder joined=""
  while IFS= read -r holder; do # several sockets of one process show it once
    joined+="${joined:+, }$holder"
  done < <(printf '%s\n' "${others[@]}" ${unseen:+"$unseen"} | sort -u)
  printf '%s\n' "$joined"
}

postgres_pid() {
  local pidfile pid
  pidfile="$(pg_data_dir)/postmaster.pid"
  [ -f "$pidfile" ] || return 0
  pid="$(head -n 1 "$pidfile")"
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

service_pidfile() {
  case "$1" in
    seaweedfs) echo "$STACK_DIR/weed.pid" ;;
    *) echo "$STACK_DIR/$1.pid" ;;
  esac
}

# The pid of the running service $1 that this stack started (its pid file), or nothing.
service_pid() {
  if [ "$1" = postgres ]; then postgres_pid; return 0; fi
  local pidfile; pidfile="$(service_pidfile "$1")"
  if pid_alive "$pidfile"; then cat "$pidfile"; fi
}

# Refuses to start while another process listens on a port of the stack; a port of a service
# this stack already runs is its own. Every held port is named, and nothing has started yet.
refuse_held_ports() {
  local service port setting holders problems=()
  while read -r service port setting; do
    holders="$(other_listeners "$port" "$(service_pid "$service")")"
    if [ -n "$holders" ]; then problems+=("port $port ($setting) is held by $holders"); fi
  done < <(stack_ports)
  if [ ${#problems[@]} -gt 0 ]; then
    log "refusing to run 'start': ports held by other processes"
    local problem
    for problem in "${problems[@]}"; do log "  $problem"; done
    log "  stop them, or move this stack with the STACK_* variables (scripts/stack.sh ports)"
    exit 1
  fi
}

# Waits until $service's process $pid (and its group) listens on each of the service's ports,
# and no other process does: a port taken after refuse_held_ports looked, or a service that
# died, fails here, loudly, instead of a client reaching someone else's server.
# $3: how many 0.2 s waits each port gets.
wait_until_listening() {
  local service=$1 pid=$2 tries=${3:-150} name port setting holders try
  local logfile="$STACK_DIR/logs/$service.log"
  [ "$service" != postgres ] || logfile="$(dirname "$(pg_data_dir)")/postgres.log"
  while read -r name port setting; do
    [ "$name" = "$service" ] || continue
    for ((try = 1; ; try++)); do
      holders="$(other_listeners "$port" "$pid")"
      if [ -n "$holders" ]; then
        log "$service: port $port ($setting) is held by $holders, not by the $service this script runs (pid $pid)"
        return 1
      fi
      if ! kill -0 "$pid" 2>/dev/null; then
        log "$service (pid $pid) exited before it listened on port $port ($setting); the end of $logfile:"
        tail -n 5 "$logfile" 2>/dev/null | sed 's/^/[stack]   /' >&2
        return 1
      fi
      if [ -n "$(listening_socket_inodes "$port")" ]; then break; fi
      if ((try >= tries)); then
        log "$service (pid $pid) did not listen on port $port ($setting) within $((tries / 5)) s; see $logfile"
        return 1
      fi
      sleep 0.2
    done
  done < <(stack_ports)
}

# A service that was already running must be listening on this run's ports: it may have been
# started with other STACK_* values.
check_running_service() {
  local service=$1 pid=$2
  log "$service already running (pid $pid)"
  wait_until_listening "$service" "$pid" 10 ||
    { log "$service: scripts/stack.sh stop, then start again with these ports"; return 1; }
}

# Services this run of `start` started: stopped again if it fails.
STARTED_NOW=()

stop_started_now() {
  [ ${#STARTED_NOW[@]} -gt 0 ] || return 0
  local service index
  for ((index = ${#STARTED_NOW[@]} - 1; index >= 0; index--)); do
    service="${STARTED_NOW[index]}"
    if [ "$service" = postgres ]; then stop_postgres; else stop_pidfile "$(service_pidfile "$service")" "$service"; fi
  done
  log "start failed: stopped what it had started"
}

start_postgres() {
  [ -x "$PG_BIN/pg_ctl" ] || { log "PostgreSQL binaries not found (run scripts/bootstrap.sh)"; return 1; }
  local data; data="$(pg_data_dir)"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initdb $data"
    mkdir -p "$data"
    local pwfile; pwfile="$(dirname "$data")/pwfile"
    printf '%s\n' "$PG_PASSWORD" >"$pwfile"
    if [ "$(id -u)" = 0 ]; then chown -R postgres: "$(dirname "$data")"; fi
    as_postgres "$PG_BIN/initdb" -D "$data" -U "$PG_USER" --pwfile="$pwfile" \
      --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$STACK_DIR/logs/initdb.log"
    rm -f "$pwfile"
  fi
  local pid; pid="$(postgres_pid)"
  if [ -n "$pid" ]; then
    check_running_service postgres "$pid" || return 1
  else
    log "postgres on 127.0.0.1:$PG_PORT"
    STARTED_NOW+=(postgres)
    echo started >"$STACK_DIR/postgres.started"
    if ! as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$(dirname "$data")/postgres.log" -w -t 60 start \
      -o "$(pg_server_options)" >/dev/null; then
      log "postgres did not start on port $PG_PORT (STACK_PG_PORT); the end of $(dirname "$data")/postgres.log:"
      tail -n 5 "$(dirname "$data")/postgres.log" 2>/dev/null | sed 's/^/[stack]   /' >&2
      return 1
    fi
    wait_until_listening postgres "$(postgres_pid)" || return 1
  fi
  local db
  for db in dwh dagster; do
    if ! PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
      PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "CREATE DATABASE $db" >/dev/null
    fi
  done
}

restart_postgres() {
  local data; data="$(pg_data_dir)"
  log "restarting postgres (-m immediate)"
  as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$(dirname "$data")/postgres.log" -w -t 60 -m immediate \
    restart -o "$(pg_server_options)" >/dev/null
}

start_seaweedfs() {
  if pid_alive "$STACK_DIR/weed.pid"; then
    check_running_service seaweedfs "$(cat "$STACK_DIR/weed.pid")"
    return
  fi
  mkdir -p "$STACK_DIR/weed"
  cat >"$STACK_DIR/s3-identities.json" <<JSON
{"identities": [{"name": "pipeline",
  "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  log "seaweedfs S3 on 127.0.0.1:$S3_PORT"
  setsid "$VENV_BIN/weed" mini -dir="$STACK_DIR/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$WEED_MASTER_PORT" -master.port.grpc="$WEED_MASTER_GRPC_PORT" \
    -volume.port="$WEED_VOLUME_PORT" -volume.port.grpc="$WEED_VOLUME_GRPC_PORT" \
    -filer.port="$WEED_FILER_PORT" -filer.port.grpc="$WEED_FILER_GRPC_PORT" \
    -s3.port="$S3_PORT" -s3.port.grpc="$S3_GRPC_PORT" -s3.port.iceberg=0 -s3.port.lance=0 \
    -admin.ui=false -admin.port="$WEED_ADMIN_PORT" -admin.port.grpc="$WEED_ADMIN_GRPC_PORT" \
    -webdav=false -master.volumeSizeLimitMB=256 \
    -s3.config="$STACK_DIR/s3-identities.json" -bucket="$S3_BUCKET_NAME" \
    >"$STACK_DIR/logs/seaweedfs.log" 2>&1 </dev/null &
  echo $! >"$STACK_DIR/weed.pid"
  STARTED_NOW+=(seaweedfs)
  wait_until_listening seaweedfs "$!" 300 || return 1
  # The port opens before the bucket and identities are loaded: wait for a signed request to pass.
  local tries
  for tries in $(seq 100); do
    if "$VENV_BIN/python" - "$S3_PORT" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" "$S3_BUCKET_NAME" <<'PY' 2>/dev/null
import sys, boto3
port, key, secret, bucket = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="us-east-1")
s3.head_bucket(Bucket=bucket)
PY
    then return 0; fi
    sleep 0.3
  done
  log "seaweedfs did not accept signed requests after $tries tries; see $STACK_DIR/logs/seaweedfs.log"
  return 1
}

start_simulator() {
  if pid_alive "$STACK_DIR/simulator.pid"; then
    check_running_service simulator "$(cat "$STACK_DIR/simulator.pid")"
    return
  fi
  log "amplitude simulator on 127.0.0.1:$SIM_PORT"
  AMPLITUDE_API_KEY="$SIM_API_KEY" AMPLITUDE_SECRET_KEY="$SIM_SECRET_KEY" \
    setsid "$VENV_BIN/python" -m amplitude_simulator --host 127.0.0.1 --port "$SIM_PORT" \
    >"$STACK_DIR/logs/simulator.log" 2>&1 </dev/null &
  echo $! >"$STACK_DIR/simulator.pid"
  STARTED_NOW+=(simulator)
  wait_until_listening simulator "$!"
}

start_pushgateway() {
  if pid_alive "$STACK_DIR/pushgateway.pid"; then
    check_running_service pushgateway "$(cat "$STACK_DIR/pushgateway.pid")"
    return
  fi
  [ -x /usr/bin/prometheus-pushgateway ] || { log "prometheus-pushgateway not found (run scripts/bootstrap.sh)"; return 1; }
  mkdir -p "$STACK_DIR/pushgateway"
  log "pushgateway on 127.0.0.1:$PUSHGATEWAY_PORT"
  # The persistence file is set: Debian's default is /var/lib/prometheus, a system service's.
  setsid /usr/bin/prometheus-pushgateway --web.listen-address="127.0.0.1:$PUSHGATEWAY_PORT" \
    --persistence.file="$STACK_DIR/pushgateway/metrics.data" --persistence.interval=30s \
    >"$STACK_DIR/logs/pushgateway.log" 2>&1 </dev/null &
  echo $! >"$STACK_DIR/pushgateway.pid"
  STARTED_NOW+=(pushgateway)
  wait_until_listening pushgateway "$!"
}

stop_pidfile() {
  local pidfile=$1 name=$2
  if pid_alive "$pidfile"; then
    local pid; pid="$(cat "$pidfile")"
    log "stopping $name ($pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

stop_postgres() {
  if [ -f "$STACK_DIR/postgres.started" ]; then
    log "stopping postgres"
    as_postgres "$PG_BIN/pg_ctl" -D "$(pg_data_dir)" -m fast -w stop >/dev/null 2>&1 || true
    rm -f "$STACK_DIR/postgres.started"
  fi
}

print_env() {
  cat <<ENV
export AMPLITUDE_API_KEY=$SIM_API_KEY
export AMPLITUDE_SECRET_KEY=$SIM_SECRET_KEY
export AMPLITUDE_EXPORT_URL=http://127.0.0.1:$SIM_PORT/api/2/export
export AMPLITUDE_START_DATE=\${AMPLITUDE_START_DATE:-2024-01-01}
export S3_BUCKET=$S3_BUCKET_NAME
export S3_PREFIX=\${S3_PREFIX:-amplitude/events}
export S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_REGION=us-east-1
export DWH_URL=postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/dwh
export DWH_SCHEMA=\${DWH_SCHEMA:-public}
export PROMETHEUS_PUSHGATEWAY_URL=http://127.0.0.1:$PUSHGATEWAY_PORT
export DAGSTER_PG_URL=postgresql+psycopg2://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/dagster
export DAGSTER_HOME=$REPO/.local/dagster_home
ENV
}

prepare_dagster_home() {
  mkdir -p "$REPO/.local/dagster_home"
  ln -sf "$REPO/dagster.yaml" "$REPO/.local/dagster_home/dagster.yaml"
}

cmd="${1:-status}"
case "$cmd" in
  stop | status) ;;
  *) resolve_ports ;;
esac
[ "$cmd" != start ] || refuse_held_ports
mkdir -p "$STACK_DIR/logs"
case "$cmd" in
  start)
    trap stop_started_now EXIT
    start_postgres
    start_seaweedfs
    start_simulator
    start_pushgateway
    prepare_dagster_home
    print_env >"$STACK_DIR/stack.env"
    trap - EXIT
    log "ready; environment: source $STACK_DIR/stack.env"
    ;;
  stop)
    stop_pidfile "$STACK_DIR/pushgateway.pid" pushgateway
    stop_pidfile "$STACK_DIR/simulator.pid" simulator
    stop_pidfile "$STACK_DIR/weed.pid" seaweedfs
    stop_postgres
    ;;
  status)
    data="$(pg_data_dir)"
    if as_postgres "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then echo "postgres: running ($data)"; else echo "postgres: stopped"; fi
    if pid_alive "$STACK_DIR/weed.pid"; then echo "seaweedfs: running"; else echo "seaweedfs: stopped"; fi
    if pid_alive "$STACK_DIR/simulator.pid"; then echo "simulator: running"; else echo "simulator: stopped"; fi
    if pid_alive "$STACK_DIR/pushgateway.pid"; then echo "pushgateway: running"; else echo "pushgateway: stopped"; fi
    ;;
  env)
    print_env
    ;;
  ports)
    print_ports
    ;;
  restart-postgres)
    restart_postgres
    ;;
  *)
    echo "usage: $0 start|stop|status|env|ports|restart-postgres" >&2
    exit 2
    ;;
esac
