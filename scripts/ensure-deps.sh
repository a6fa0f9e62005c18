#!/usr/bin/env bash
# ensure-deps.sh: make sure the machine has what the tests need that Go modules cannot bring, from
# Debian's packages:
#   postgresql    initdb, postgres, pg_ctl, psql, pg_basebackup (store/pgtest, scripts/dev-postgres.sh)
#   redis-server  the redis probe's tests
#   prometheus    the prometheus probe's tests
#   patroni, etcd-server   the Patroni failover tests (etcd 3.4 as Patroni's DCS)
#   chromium      the console's browser tests (internal/browsertest drives it headless over the
#                 DevTools protocol; no chromium-driver needed, no browser downloaded by a library)
# As root it installs what is missing with apt-get; otherwise it prints the command and exits 1.
# Honours $PG_BIN like store/pgtest does, and $CHROMIUM_BIN like internal/browsertest does.
set -euo pipefail

pg_bin() {
	if [[ -n "${PG_BIN:-}" ]]; then
		echo "$PG_BIN"
		return
	fi
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	echo "$d"
}

have_postgresql() {
	local d
	d=$(pg_bin)
	[[ -n "$d" && -x "$d/initdb" && -x "$d/postgres" && -x "$d/pg_ctl" && -x "$d/pg_basebackup" ]]
}
have_redis-server() { command -v redis-server >/dev/null; }
have_prometheus() { command -v prometheus >/dev/null; }
have_patroni() { command -v patroni >/dev/null; }
have_etcd-server() { [[ -x /usr/bin/etcd ]]; }
have_chromium() { [[ -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]]; }

missing=()
for pkg in postgresql redis-server prometheus patroni etcd-server chromium; do
	if ! "have_$pkg"; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} > 0)); then
	cmd="apt-get install -y ${missing[*]}"
	if [[ $(id -u) -ne 0 ]]; then
		echo "ensure-deps: missing ${missing[*]}: run '$cmd' (as root)" >&2
		exit 1
	fi
	echo "ensure-deps: installing: $cmd"
	export DEBIAN_FRONTEND=noninteractive
	# The package lists may be missing or stale on a fresh machine. The packages' own services
	# are not wanted (tests start their own servers): policy-rc.d keeps them from starting.
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
		apt-get update -q
		apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
	for pkg in "${missing[@]}"; do
		if ! "have_$pkg"; then
			echo "ensure-deps: '$cmd' ran but $pkg is still missing" >&2
			exit 1
		fi
	done
fi
echo "ensure-deps: PostgreSQL $(pg_bin) ($("$(pg_bin)/postgres" --version)); $(redis-server --version | cut -d' ' -f1-3); $(prometheus --version 2>&1 | head -1); patroni $(patroni --version 2>&1 | awk '{print $2}'); $(/usr/bin/etcd --version 2>&1 | head -1); $("${CHROMIUM_BIN:-/usr/bin/chromium}" --version 2>/dev/null)"
