#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests, on 127.0.0.1 only.
#
#   pg.sh start DIR    initdb (first time) and start a server whose files all live in DIR;
#                      prints TP_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:PORT/postgres
#                      on stdout (and writes the same line to DIR/env). Everything else goes
#                      to stderr, so `export "$(pg.sh start DIR)"` works.
#   pg.sh stop DIR     pg_ctl stop -m fast and wait until the postmaster and every backend exited.
#   pg.sh status DIR   exit 0 when the server in DIR runs (and print its URL), 3 when it does not.
#
# Layout of DIR: data/ (PGDATA), run/ (unix socket), postgres.log, env.
# Tuned for test speed, NOT durability: fsync, synchronous_commit and full_page_writes are off.
# Authentication is trust, on the unix socket in DIR/run and 127.0.0.1 only.
#
# Uses the highest /usr/lib/postgresql/*/bin (Debian's layout). When none is installed and we
# are root with apt-get, installs the `postgresql` package. As root, initdb and the server run
# as the `postgres` system user (PostgreSQL refuses to run as root).
set -euo pipefail

readonly START_TIMEOUT_S=30
readonly STOP_TIMEOUT_S=60
readonly MAX_CONNECTIONS=300
readonly PORT_ATTEMPTS=5

log() { printf 'pg.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: pg.sh ensure | start DIR | stop DIR | status DIR
  ensure  install the Debian PostgreSQL server when missing (as root)
  start   initialise (first time) and start PostgreSQL on a free 127.0.0.1 port, files in DIR
  stop    stop it (fast shutdown), leaving no server processes
  status  exit 0 if running (prints the URL), 3 if not
EOF
    exit 2
}

find_bindir() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1)
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" && -x "$dir/pg_isready" ]]; then
        printf '%s\n' "$dir"
    fi
}

ensure_bindir() {
    BINDIR=$(find_bindir)
    if [[ -n "$BINDIR" ]]; then
        return
    fi
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
        log "no PostgreSQL under /usr/lib/postgresql/*/bin; installing the Debian package"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2; then
            DEBIAN_FRONTEND=noninteractive apt-get update >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
        fi
        BINDIR=$(find_bindir)
        [[ -n "$BINDIR" ]] || die "apt-get installed postgresql but /usr/lib/postgresql/*/bin/{initdb,pg_ctl,postgres,pg_isready} are still missing"
        return
    fi
    die "PostgreSQL server binaries are missing: need /usr/lib/postgresql/<version>/bin/{initdb,pg_ctl,postgres,pg_isready}. Install them with \`apt-get install postgresql\` (as root), or run this script as root on a Debian/Ubuntu system so it can install them."
}

# Runs a command as the user that owns the server: `postgres` when we are root, else ourselves.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        if command -v runuser >/dev/null; then
            runuser -u postgres -- "$@"
        else
            su postgres -s /bin/sh -c '"$0" "$@"' -- "$@"
        fi
    else
        "$@"
    fi
}

# Prints a TCP port that is free on 127.0.0.1 right now. Someone may take it before the server
# binds it; start_server retries with another port when that happens.
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
        return
    fi
    local port
    while :; do
        port=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return
        fi
    done
}

# The port of the server running in $PGDATA (line 4 of postmaster.pid), empty if none.
running_port() {
    if [[ -f "$PGDATA/postmaster.pid" ]] && as_pg "$BINDIR/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
        sed -n 4p "$PGDATA/postmaster.pid"
    fi
}

# True when $1 is a running (not zombie) postgres process. A postmaster that exited stays a
# zombie until init reaps it, and kill -0 still succeeds on zombies.
is_live_postgres() {
    local state comm
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    comm=$(ps -o comm= -p "$1" 2>/dev/null) || return 1
    [[ "$state" != Z* && "$comm" == postgres* ]]
}

url_for() { printf 'TP_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:%s/postgres\n' "$1"; }

set_paths() {
    [[ -n "${1:-}" ]] || usage
    mkdir -p -- "$1"
    DIR=$(cd -- "$1" && pwd -P)
    PGDATA="$DIR/data"
    SOCKDIR="$DIR/run"
    LOGFILE="$DIR/postgres.log"
    ENVFILE="$DIR/env"
}

init_cluster() {
    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 ||
            die "the system user 'postgres' is missing (the Debian postgresql package creates it); create it with \`useradd --system --home-dir /var/lib/postgresql postgres\`"
        chown postgres: "$DIR"
        as_pg test -w "$DIR" -a -x "$DIR" ||
            die "user 'postgres' cannot write $DIR: a parent directory is not traversable by it; pick a DIR under /tmp"
    fi
    # Unix socket paths are limited to 107 bytes: DIR/run/.s.PGSQL.NNNNN
    ((${#SOCKDIR} + 17 <= 107)) || die "DIR is too long for a unix socket path ($SOCKDIR); pick a shorter DIR"
    as_pg mkdir -p "$SOCKDIR"

    if [[ -f "$PGDATA/PG_VERSION" ]]; then
        log "reusing the cluster in $PGDATA"
        return
    fi
    log "initdb in $PGDATA"
    as_pg "$BINDIR/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 \
        --no-locale --no-sync >"$DIR/initdb.log" 2>&1 ||
        die "initdb failed; see $DIR/initdb.log: $(tail -n 5 "$DIR/initdb.log")"

    # Only the socket in DIR/run and 127.0.0.1; nothing else may connect.
    as_pg tee "$PGDATA/pg_hba.conf" >/dev/null <<'EOF'
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
EOF
    as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF

# --- deploy/postgres/pg.sh: test server, speed over durability ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCKDIR'
max_connections = $MAX_CONNECTIONS
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
}

wait_ready() {
    local port=$1 deadline=$((SECONDS + START_TIMEOUT_S))
    until "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres -t 1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

cmd_start() {
    set_paths "$@"
    ensure_bindir
    local port
    port=$(running_port)
    if [[ -n "$port" ]]; then
        log "already running in $PGDATA on 127.0.0.1:$port"
        url_for "$port" | tee "$ENVFILE"
        return
    fi
    init_cluster

    local attempt
    for ((attempt = 1; attempt <= PORT_ATTEMPTS; attempt++)); do
        port=$(free_port)
        log "starting PostgreSQL $(basename "$(dirname "$BINDIR")") on 127.0.0.1:$port (data $PGDATA, log $LOGFILE)"
        : >"$LOGFILE"
        [[ $EUID -ne 0 ]] || chown postgres: "$LOGFILE"
        # pg_ctl puts the postmaster in its own session, so it outlives this script and
        # ignores the terminal's Ctrl-C; `pg.sh stop DIR` ends it.
        if as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -l "$LOGFILE" -o "-p $port" \
            -w -t "$START_TIMEOUT_S" start >/dev/null; then
            wait_ready "$port" || die "server started but did not accept connections within ${START_TIMEOUT_S}s; see $LOGFILE"
            url_for "$port" | tee "$ENVFILE"
            return
        fi
        if grep -q 'could not bind\|Address already in use' "$LOGFILE"; then
            log "port $port was taken meanwhile; trying another"
            continue
        fi
        die "pg_ctl start failed; last lines of $LOGFILE: $(tail -n 20 "$LOGFILE")"
    done
    die "no free port found in $PORT_ATTEMPTS attempts"
}

cmd_stop() {
    set_paths "$@"
    ensure_bindir
    if [[ ! -f "$PGDATA/postmaster.pid" ]]; then
        log "no server running in $PGDATA"
        rm -f -- "$ENVFILE"
        return
    fi
    local pid
    pid=$(sed -n 1p "$PGDATA/postmaster.pid")
    # -m fast: roll back open transactions, disconnect clients, then exit. -w waits until the
    # postmaster is gone, and the postmaster exits only after all its backends have.
    if ! as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -m fast -w -t "$STOP_TIMEOUT_S" stop >&2; then
        log "fast shutdown did not finish in ${STOP_TIMEOUT_S}s; immediate shutdown"
        as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -m immediate -w -t 10 stop >&2 || true
    fi
    if [[ -n "$pid" ]] && is_live_postgres "$pid"; then
        log "postmaster $pid still alive; killing its process group"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f -- "$ENVFILE"
    log "stopped the server in $PGDATA"
}

cmd_status() {
    set_paths "$@"
    ensure_bindir
    local port
    port=$(running_port)
    if [[ -z "$port" ]]; then
        log "no server running in $PGDATA"
        exit 3
    fi
    url_for "$port"
}

main() {
    if [[ $# -eq 1 && "$1" == ensure ]]; then
        # Install the server if missing (needs the network: run before entering a netns).
        ensure_bindir
        log "PostgreSQL server binaries: $BINDIR"
        return
    fi
    [[ $# -eq 2 ]] || usage
    case "$1" in
        start) cmd_start "$2" ;;
        stop) cmd_stop "$2" ;;
        status) cmd_status "$2" ;;
        *) usage ;;
    esac
}

main "$@"
