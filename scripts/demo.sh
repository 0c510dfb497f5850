#!/usr/bin/env bash
# demo.sh — what `make run` runs after building: a throwaway PostgreSQL and Redis on free
# loopback ports under .demo/ (git-ignored, recreated on every run), the small shop schema of
# scripts/demo-schema.sql in a database `demo`, and pgstash in the foreground on
# 127.0.0.1:6432 with its logs on the terminal. Ctrl-C (or pgstash exiting) stops all three,
# by PID. As root, PostgreSQL runs as the unprivileged `postgres` OS user.
#
#   scripts/demo.sh            (PGSTASH_BIN=/path/to/pgstash to run another build;
#                               PGSTASH_DEMO_PORT and PGSTASH_DEMO_DIR move it elsewhere,
#                               as tests/integration/test_demo.py does)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO=${PGSTASH_DEMO_DIR:-$ROOT/.demo}
BIN=${PGSTASH_BIN:-$ROOT/pgstash}
LISTEN_PORT=${PGSTASH_DEMO_PORT:-6432}
MARKER=.pgstash-demo   # in every folder this script made: the only ones it empties

say() { printf 'demo: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$BIN" ] || die "pgstash binary not found at $BIN: run 'make' (or 'make run') first"
BIN=$(readlink -f "$BIN")

# --- tools --------------------------------------------------------------------------------

PG_BINDIR=
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5n); do
    [ -x "$d/initdb" ] && PG_BINDIR=$d
done
if [ -z "$PG_BINDIR" ] && command -v initdb >/dev/null 2>&1; then
    PG_BINDIR=$(dirname "$(command -v initdb)")
fi
[ -n "$PG_BINDIR" ] || die "PostgreSQL server binaries not found: run scripts/install-deps.sh run"
command -v redis-server >/dev/null 2>&1 || die "redis-server not found: run scripts/install-deps.sh run"
PSQL=$PG_BINDIR/psql
[ -x "$PSQL" ] || PSQL=psql

if [ "$(id -u)" -eq 0 ]; then
    PG_OS_USER=postgres
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' OS user (Debian's postgresql package creates it)"
    as_pg() { runuser -u postgres -- "$@"; }
else
    PG_OS_USER=$(id -un)
    as_pg() { "$@"; }
fi
DB_USER=$PG_OS_USER   # the database superuser has the OS user's name; trust on loopback

# A TCP connect to 127.0.0.1:PORT succeeds: something listens there.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local p
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        port_in_use "$p" || { echo "$p"; return; }
    done
    die "no free port found"
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# The folder is recreated on every run; one this script did not make is never touched.
if [ -d "$DEMO" ] && [ ! -e "$DEMO/$MARKER" ] && [ "$DEMO" != "$ROOT/.demo" ] &&
    [ -n "$(ls -A "$DEMO")" ]; then
    die "$DEMO is not empty and was not made by this script: choose another PGSTASH_DEMO_DIR"
fi

# --- a previous demo that was not shut down (killed terminal, SIGKILL) ---------------------

stop_leftovers() {
    local pid dir
    if [ -f "$DEMO/pids" ]; then
        while read -r pid dir; do
            # Only processes that still live in that demo's directories: PIDs get reused.
            if pid_alive "$pid" && [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$dir"* ]]; then
                say "stopping a leftover process of an earlier demo (pid $pid)"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done <"$DEMO/pids"
    fi
    if [ -f "$DEMO/pgdata-path" ]; then
        rm -rf "$(cat "$DEMO/pgdata-path")"
    fi
}

if port_in_use "$LISTEN_PORT"; then
    stop_leftovers
    if port_in_use "$LISTEN_PORT"; then
        die "127.0.0.1:$LISTEN_PORT is already taken by another program: stop it (see: ss -ltnp 'sport = :$LISTEN_PORT') and run again"
    fi
fi
stop_leftovers
rm -rf "$DEMO"
mkdir -p "$DEMO"
DEMO=$(cd "$DEMO" && pwd)
touch "$DEMO/$MARKER"

# --- cleanup, by PID --------------------------------------------------------------------------

PGSTASH_PID= REDIS_PID= PG_PID= PG_EXTERNAL_DIR=
PGDATA=

wait_gone() {  # pid seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do pid_alive "$1" || return 0; sleep 0.1; done
    return 1
}

cleanup() {
    local rc=$?
    trap - INT TERM EXIT
    say "stopping..."
    if pid_alive "$PGSTASH_PID"; then
        # A Ctrl-C on the terminal reaches pgstash too, and it drains on it: a TERM now would
        # be a second signal, which makes pgstash exit at once instead.
        if [ "$interrupted" -eq 0 ] || ! wait_gone "$PGSTASH_PID" 5; then
            kill -TERM "$PGSTASH_PID" 2>/dev/null || true
        fi
        wait_gone "$PGSTASH_PID" 10 || kill -KILL "$PGSTASH_PID" 2>/dev/null || true
    fi
    if pid_alive "$REDIS_PID"; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait_gone "$REDIS_PID" 5 || kill -KILL "$REDIS_PID" 2>/dev/null || true
    fi
    if pid_alive "$PG_PID"; then
        as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -m fast -w -t 20 stop >/dev/null 2>&1 ||
            kill -KILL "$PG_PID" 2>/dev/null || true
    fi
    [ -n "$PG_EXTERNAL_DIR" ] && rm -rf "$PG_EXTERNAL_DIR"
    rm -f "$DEMO/pids" "$DEMO/pgdata-path"
    say "PostgreSQL, Redis and pgstash stopped (logs are in $DEMO until the next run)"
    exit "$rc"
}
interrupted=0
trap cleanup EXIT
trap 'interrupted=1; exit 130' INT
trap 'exit 143' TERM

# --- PostgreSQL -----------------------------------------------------------------------------

PG_PORT=$(free_port)
PG_DIR=$DEMO/pg
mkdir -p "$PG_DIR"
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$PG_DIR"
    # postgres must be able to reach the directory: /root/... usually is not traversable.
    if ! as_pg test -w "$PG_DIR"; then
        PG_EXTERNAL_DIR=$(mktemp -d /tmp/pgstash-demo-pg.XXXXXX)
        chown postgres: "$PG_EXTERNAL_DIR"
        PG_DIR=$PG_EXTERNAL_DIR
        echo "$PG_EXTERNAL_DIR" >"$DEMO/pgdata-path"
        say "PostgreSQL cannot reach $DEMO as user postgres; its data lives in $PG_DIR instead"
    fi
fi
PGDATA=$PG_DIR/data
PG_LOG=$PG_DIR/postgres.log

say "initdb into $PGDATA (PostgreSQL runs as OS user $PG_OS_USER)"
(cd "$PG_DIR" && as_pg "$PG_BINDIR/initdb" -D "$PGDATA" -U "$DB_USER" --auth=trust \
    --encoding=UTF8 --locale=C --no-sync >"$DEMO/initdb.log" 2>&1) ||
    { cat "$DEMO/initdb.log" >&2; die "initdb failed"; }
cat >>"$PGDATA/postgresql.conf" <<EOF

# pgstash demo (scripts/demo.sh)
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 200
fsync = off
synchronous_commit = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
(cd "$PG_DIR" && as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w -t 60 start >/dev/null) ||
    { tail -20 "$PG_LOG" >&2; die "PostgreSQL did not start (log: $PG_LOG)"; }
PG_PID=$(head -1 "$PGDATA/postmaster.pid")
echo "$PG_PID $PGDATA" >>"$DEMO/pids"
[ -e "$DEMO/postgres.log" ] || ln -s "$PG_LOG" "$DEMO/postgres.log" 2>/dev/null || true
say "PostgreSQL $("$PG_BINDIR/postgres" -V | awk '{print $3}') on 127.0.0.1:$PG_PORT (pid $PG_PID)"

# --- Redis ----------------------------------------------------------------------------------

REDIS_PORT=$(free_port)
mkdir -p "$DEMO/redis"
(cd "$DEMO/redis" && exec redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --daemonize no --protected-mode no --maxmemory 128mb \
    --maxmemory-policy allkeys-lru --dir "$DEMO/redis" --logfile "$DEMO/redis.log" \
    </dev/null >/dev/null 2>&1) &
REDIS_PID=$!
echo "$REDIS_PID $DEMO/redis" >>"$DEMO/pids"
redis_ready() {
    local reply
    exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" || return 1
    printf 'PING\r\n' >&3
    read -r -t 2 reply <&3 || true
    exec 3>&-
    [[ "$reply" == +PONG* ]]
}
for ((i = 0; i < 100; i++)); do
    redis_ready 2>/dev/null && break
    pid_alive "$REDIS_PID" || { tail -20 "$DEMO/redis.log" >&2; die "redis-server exited"; }
    sleep 0.1
done
redis_ready 2>/dev/null || die "redis-server did not answer PING on port $REDIS_PORT"
say "Redis on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"

# --- the demo database ------------------------------------------------------------------------

export PGCONNECT_TIMEOUT=10
"$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d postgres -c "CREATE DATABASE demo" ||
    die "could not create database demo"
"$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d demo -v ON_ERROR_STOP=1 \
    -f "$ROOT/scripts/demo-schema.sql" || die "could not load scripts/demo-schema.sql"
counts=$("$PSQL" -X -At -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d demo -c \
    "SELECT (SELECT count(*) FROM products) || ' products, ' || (SELECT count(*) FROM customers)
            || ' customers, ' || (SELECT count(*) FROM orders) || ' orders'")
say "database demo loaded: $counts"

# --- pgstash ----------------------------------------------------------------------------------

ADMIN_PORT=$(free_port)
cat >"$DEMO/pgstash.yaml" <<EOF
# pgstash demo configuration, written by scripts/demo.sh (recreated on every run).
listen: 127.0.0.1:$LISTEN_PORT
upstream: 127.0.0.1:$PG_PORT
redis: redis://127.0.0.1:$REDIS_PORT/0
workers: auto
catalog:
  user: $DB_USER
cache:
  default_ttl: 60s
tables:
  products: { ttl: 10m }
  customers: { ttl: 2m }
  orders: { ttl: 5s }
log:
  level: info
  format: text
  stats_interval: 10s
limits:
  shutdown_grace: 3s
admin:
  listen: 127.0.0.1:$ADMIN_PORT
EOF

if port_in_use "$LISTEN_PORT"; then
    die "127.0.0.1:$LISTEN_PORT was taken while the demo started: stop that program and run again"
fi

URL="postgresql://$DB_USER@127.0.0.1:$LISTEN_PORT/demo"
cat >&2 <<EOF

  pgstash demo ----------------------------------------------------------------
    connect:   psql $URL
    direct:    psql postgresql://$DB_USER@127.0.0.1:$PG_PORT/demo   (PostgreSQL itself)
    stats:     curl -s http://127.0.0.1:$ADMIN_PORT/stats
    config:    $DEMO/pgstash.yaml
    try:       SELECT * FROM products WHERE category = 'books' ORDER BY price LIMIT 5;
  Ctrl-C stops pgstash, PostgreSQL and Redis.
  -----------------------------------------------------------------------------

EOF

# Started in the background only to know its PID; the script just waits on it, with its
# logs (stderr) on this terminal. Ctrl-C reaches this script, whose trap stops all three.
(cd "$DEMO" && exec "$BIN" -c "$DEMO/pgstash.yaml" </dev/null) &
PGSTASH_PID=$!
echo "$PGSTASH_PID $DEMO" >>"$DEMO/pids"
set +e
wait "$PGSTASH_PID"
rc=$?
set -e
PGSTASH_PID=
say "pgstash exited with status $rc"
exit "$rc"
