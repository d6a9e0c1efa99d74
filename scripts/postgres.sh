#!/usr/bin/env bash
# Runs a real, throwaway PostgreSQL server on 127.0.0.1 from the distribution's packages, so the
# store's tests run against Postgres as well as SQLite (CI: `.ci/run`; by hand: the same).
#
#   scripts/postgres.sh start [ENVFILE]  initdb a fresh cluster in a temporary folder, start it on
#                                        a free port; write ENVFILE
#   scripts/postgres.sh stop  [ENVFILE]  stop the server named in ENVFILE and remove its folder
#
# ENVFILE defaults to /tmp/autoharness-postgres.env and holds AUTOHARNESS_TEST_POSTGRES (a URL
# to the maintenance database; each test makes a database of its own from it) and
# AUTOHARNESS_POSTGRES_DIR. Needs the `postgresql` package (apt-get install postgresql).
# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user the
# package creates.
set -euo pipefail

DEFAULT_ENVFILE=/tmp/autoharness-postgres.env

die() {
    echo "postgres.sh: $*" >&2
    exit 1
}

bin_dir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x "$d/initdb" ]] && { echo "$d"; return 0; }
    done
    command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
    die "no PostgreSQL server found (initdb); install it: apt-get install postgresql"
}

as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

cmd_start() {
    local envfile="${1:-$DEFAULT_ENVFILE}" bin dir port
    bin="$(bin_dir)"
    dir="$(mktemp -d -t autoharness-postgres.XXXXXX)"
    if [[ "$(id -u)" == 0 ]]; then
        getent passwd postgres >/dev/null || die "running as root needs the 'postgres' user (apt-get install postgresql creates it)"
        chown postgres "$dir"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    port="$(free_port)"
    # Enough connections for the tests' parallel stores (a pool of a few per store, many tests
    # at once); fsync off: a throwaway test server.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null || { cat "$dir/server.log" >&2; die "the server did not start"; }
    {
        echo "AUTOHARNESS_TEST_POSTGRES=postgres://postgres@127.0.0.1:$port/postgres"
        echo "AUTOHARNESS_POSTGRES_DIR=$dir"
    } >"$envfile"
    echo "postgres.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $dir)"
}

cmd_stop() {
    local envfile="${1:-$DEFAULT_ENVFILE}" dir
    [[ -f "$envfile" ]] || return 0
    dir="$(sed -n 's/^AUTOHARNESS_POSTGRES_DIR=//p' "$envfile")"
    if [[ -n "$dir" && -d "$dir/data" ]]; then
        as_owner "$(bin_dir)/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$dir"
    fi
    # A file naming a server that no longer runs sends the next test run to a refused connection.
    rm -f "$envfile"
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    *) die "usage: scripts/postgres.sh start|stop [ENVFILE]" ;;
esac
