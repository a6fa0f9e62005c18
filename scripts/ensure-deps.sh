#!/usr/bin/env bash
# ensure-deps.sh: make sure the machine has what the tests need that Go
# modules cannot bring: the PostgreSQL server binaries (initdb, postgres,
# pg_ctl, psql) used by store/pgtest and scripts/dev-postgres.sh.
# As root it installs them with apt-get; otherwise it prints the command and
# exits 1. Honours $PG_BIN like store/pgtest does.
set -euo pipefail

INSTALL_CMD="apt-get install -y postgresql"

pg_bin() {
	if [[ -n "${PG_BIN:-}" ]]; then
		echo "$PG_BIN"
		return
	fi
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	echo "$d"
}

have_pg() {
	local d
	d=$(pg_bin)
	[[ -n "$d" && -x "$d/initdb" && -x "$d/postgres" && -x "$d/pg_ctl" ]]
}

if have_pg; then
	echo "ensure-deps: PostgreSQL server binaries: $(pg_bin) ($("$(pg_bin)/postgres" --version))"
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	echo "ensure-deps: PostgreSQL server binaries not found: run '$INSTALL_CMD' (as root)" >&2
	exit 1
fi

echo "ensure-deps: installing PostgreSQL server binaries: $INSTALL_CMD"
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine.
if ! apt-get install -y -q postgresql; then
	apt-get update -q
	apt-get install -y -q postgresql
fi
if ! have_pg; then
	echo "ensure-deps: '$INSTALL_CMD' ran but there are still no server binaries in ${PG_BIN:-/usr/lib/postgresql/*/bin}" >&2
	exit 1
fi
echo "ensure-deps: PostgreSQL server binaries: $(pg_bin)"
