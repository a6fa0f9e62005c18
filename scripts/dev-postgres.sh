#!/usr/bin/env bash
# dev-postgres.sh start|stop|status: a throwaway PostgreSQL for local
# development (used by `make run`), from the local server binaries.
#
#   data:   data/postgres under the repo root (log: data/postgres.log)
#   listen: 127.0.0.1:5433 only (a distribution cluster may own 5432),
#           trust authentication on loopback, user postgres
#   db:     responder, created if missing
#   URL:    postgres://postgres@127.0.0.1:5433/responder?sslmode=disable
#
# Run as root, the server runs as the postgres user and data/postgres is
# owned by it; if that user cannot reach the repo, the data goes to
# /tmp/responder-dev-postgres instead (said on start). Idempotent: start when
# running only makes sure the database exists; stop when stopped is fine.
# Overrides: PG_BIN, DEV_PG_PORT, DEV_PG_DATA (data directory).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${DEV_PG_PORT:-5433}
DB=responder

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)}
if [[ -z "$PG_BIN" || ! -x "$PG_BIN/pg_ctl" || ! -x "$PG_BIN/initdb" ]]; then
	echo "dev-postgres: PostgreSQL server binaries not found: run 'apt-get install -y postgresql' (as root), or scripts/ensure-deps.sh" >&2
	exit 1
fi

AS_PG=()
if [[ $(id -u) -eq 0 ]]; then
	if ! id postgres >/dev/null 2>&1; then
		echo "dev-postgres: running as root needs the postgres user (it comes with 'apt-get install -y postgresql')" >&2
		exit 1
	fi
	if command -v runuser >/dev/null 2>&1; then
		AS_PG=(runuser -u postgres --)
	elif command -v setpriv >/dev/null 2>&1; then
		AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)
	else
		echo "dev-postgres: running as root needs runuser or setpriv (util-linux) to drop to the postgres user" >&2
		exit 1
	fi
fi

# as_pg runs a command as the server user, from / so its cwd is reachable.
as_pg() { (cd / && "${AS_PG[@]}" "$@"); }

if [[ -n "${DEV_PG_DATA:-}" ]]; then
	DATA=$DEV_PG_DATA
elif [[ ${#AS_PG[@]} -gt 0 ]] && ! as_pg test -x "$ROOT"; then
	DATA=/tmp/responder-dev-postgres/postgres
	NOTE="the postgres user cannot reach $ROOT, so the data is in $DATA"
else
	DATA=$ROOT/data/postgres
fi
LOG=$(dirname "$DATA")/postgres.log
URL="postgres://postgres@127.0.0.1:$PORT/$DB?sslmode=disable"

psql_() { "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }

running() { [[ -f "$DATA/PG_VERSION" ]] && as_pg "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

init_cluster() {
	mkdir -p "$DATA"
	touch "$LOG"
	if [[ ${#AS_PG[@]} -gt 0 ]]; then
		chown postgres:postgres "$DATA" "$LOG"
	fi
	chmod 700 "$DATA"
	as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-locale >>"$LOG" 2>&1 || {
		echo "dev-postgres: initdb failed; see $LOG" >&2
		tail -n 20 "$LOG" >&2
		exit 1
	}
	# Loopback only, trust: a throwaway development server.
	local sock=$DATA
	if [[ ${#sock} -gt 90 ]]; then sock=""; fi # unix socket paths are limited to ~107 bytes
	as_pg tee -a "$DATA/postgresql.conf" >/dev/null <<CONF

# written by scripts/dev-postgres.sh
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$sock'
CONF
	as_pg tee "$DATA/pg_hba.conf" >/dev/null <<'HBA'
# written by scripts/dev-postgres.sh: loopback only, trust
local   all             all                     trust
host    all             all     127.0.0.1/32    trust
host    all             all     ::1/128         trust
local   replication     all                     trust
host    replication     all     127.0.0.1/32    trust
HBA
}

ensure_db() {
	if [[ -z $(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
		psql_ -d postgres -c "CREATE DATABASE $DB"
		echo "dev-postgres: created database $DB"
	fi
}

case "${1:-}" in
start)
	if [[ -n "${NOTE:-}" ]]; then echo "dev-postgres: $NOTE"; fi
	if [[ ! -f "$DATA/PG_VERSION" ]]; then
		echo "dev-postgres: initialising $DATA ($("$PG_BIN/postgres" --version))"
		init_cluster
	fi
	if running; then
		echo "dev-postgres: already running"
	else
		if [[ ! -f "$LOG" ]]; then
			touch "$LOG"
			if [[ ${#AS_PG[@]} -gt 0 ]]; then chown postgres:postgres "$LOG"; fi
		fi
		if ! as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -o "-p $PORT" -w -t 60 start >/dev/null; then
			echo "dev-postgres: start failed; see $LOG" >&2
			tail -n 20 "$LOG" >&2
			exit 1
		fi
	fi
	ensure_db
	echo "dev-postgres: listening: $URL (log: $LOG)"
	;;
stop)
	if running; then
		as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
		echo "dev-postgres: stopped"
	else
		echo "dev-postgres: not running"
	fi
	;;
status)
	if running; then
		echo "dev-postgres: running: $URL (data: $DATA)"
	else
		echo "dev-postgres: not running (data: $DATA)"
		exit 3
	fi
	;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac
