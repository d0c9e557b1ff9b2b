# shellcheck shell=bash
# Throwaway PostgreSQL 15 for CI. Sourced by .ci/run; defines functions only.
#
#   ci_pg_start   install PG 15 if missing, initdb a temp cluster on 127.0.0.1:<free port>,
#                 create database omniretail_test, export OMNIRETAIL_TEST_POSTGRES_URL.
#   ci_pg_stop    stop the server (immediate) and delete the temp dirs. Safe to call at any
#                 point, any number of times; meant for `trap ... EXIT` set BEFORE ci_pg_start.
#
# PostgreSQL refuses to run as root, so when we are root every server-side command runs as the
# `postgres` system user via runuser. As a non-root user it runs as that user instead.

CI_PG_BIN=/usr/lib/postgresql/15/bin
CI_PG_DB=omniretail_test
CI_PG_ROOT=""   # temp dir holding data/, socket/ and server.log; empty until created
CI_PG_PORT=""

# Run a command as the user that owns the cluster, from a directory it can read.
_ci_pg_as() {
    if [[ $EUID -eq 0 ]]; then
        (cd "$CI_PG_ROOT" && runuser -u postgres -- env HOME="$CI_PG_ROOT" "$@")
    else
        (cd "$CI_PG_ROOT" && "$@")
    fi
}

_ci_pg_show_log() {
    if [[ -n $CI_PG_ROOT && -f $CI_PG_ROOT/server.log ]]; then
        echo "---- postgres server log ($CI_PG_ROOT/server.log) ----" >&2
        cat "$CI_PG_ROOT/server.log" >&2 || true
        echo "---- end of server log ----" >&2
    fi
}

_ci_pg_fail() {
    echo "error: $*" >&2
    _ci_pg_show_log
    return 1
}

ci_pg_start() {
    # 1. Binaries (Debian package) and the service user.
    if [[ ! -x $CI_PG_BIN/initdb ]]; then
        echo "PostgreSQL 15 not found in $CI_PG_BIN; installing postgresql-15"
        [[ $EUID -eq 0 ]] || { echo "error: need root to apt-get install postgresql-15" >&2; return 1; }
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15
    fi
    local tool
    for tool in initdb pg_ctl postgres pg_isready createdb; do
        [[ -x $CI_PG_BIN/$tool ]] || { echo "error: $CI_PG_BIN/$tool missing" >&2; return 1; }
    done
    if [[ $EUID -eq 0 ]]; then
        id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    fi

    # 2. Temp dirs: one root (under /tmp so postgres can traverse it and the socket path stays
    #    short) holding the data dir, socket dir and log, all owned by the server user.
    CI_PG_ROOT=$(mktemp -d /tmp/omniretail-ci-pg.XXXXXX)
    mkdir -m 0700 "$CI_PG_ROOT/data" "$CI_PG_ROOT/socket"
    chmod 0755 "$CI_PG_ROOT"
    if [[ $EUID -eq 0 ]]; then
        chown -R postgres "$CI_PG_ROOT"
    fi

    # 3. Cluster. Trust auth is fine: loopback only, throwaway, deleted on exit.
    local locale_opt=(--locale=C.UTF-8)
    locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$' || locale_opt=(--no-locale)
    _ci_pg_as "$CI_PG_BIN/initdb" -D "$CI_PG_ROOT/data" -U postgres --auth=trust \
        --encoding=UTF8 "${locale_opt[@]}" --nosync >"$CI_PG_ROOT/initdb.log" 2>&1 \
        || { cat "$CI_PG_ROOT/initdb.log" >&2; _ci_pg_fail "initdb failed"; return 1; }

    CI_PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    cat >>"$CI_PG_ROOT/data/postgresql.conf" <<EOF

# --- omniretail CI (throwaway cluster, speed over durability) ---
listen_addresses = '127.0.0.1'
port = $CI_PG_PORT
unix_socket_directories = '$CI_PG_ROOT/socket'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

    # 4. Start and wait until it accepts connections.
    _ci_pg_as "$CI_PG_BIN/pg_ctl" -D "$CI_PG_ROOT/data" -l "$CI_PG_ROOT/server.log" \
        -w -t 60 start >/dev/null \
        || { _ci_pg_fail "pg_ctl start failed (port $CI_PG_PORT)"; return 1; }
    local deadline=$((SECONDS + 30))
    until "$CI_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$CI_PG_PORT" -U postgres -d postgres; do
        if ((SECONDS >= deadline)); then
            _ci_pg_fail "postgres on 127.0.0.1:$CI_PG_PORT not ready after 30s"
            return 1
        fi
        sleep 0.2
    done

    "$CI_PG_BIN/createdb" -h 127.0.0.1 -p "$CI_PG_PORT" -U postgres "$CI_PG_DB" \
        || { _ci_pg_fail "createdb $CI_PG_DB failed"; return 1; }

    export OMNIRETAIL_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$CI_PG_PORT/$CI_PG_DB"
    echo "$("$CI_PG_BIN/postgres" --version) ready at $OMNIRETAIL_TEST_POSTGRES_URL"
}

ci_pg_stop() {
    [[ -n ${CI_PG_ROOT:-} && -d $CI_PG_ROOT ]] || return 0
    local pidfile=$CI_PG_ROOT/data/postmaster.pid pid
    if [[ -f $pidfile ]]; then
        pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
        _ci_pg_as "$CI_PG_BIN/pg_ctl" -D "$CI_PG_ROOT/data" -m immediate -w -t 30 stop \
            >/dev/null 2>&1 || true
        # Belt and braces: never leave a postmaster behind.
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -rf -- "$CI_PG_ROOT" || true
    CI_PG_ROOT=""
    return 0
}
