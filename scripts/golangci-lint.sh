#!/usr/bin/env bash
# golangci-lint.sh ARGS...: run golangci-lint at the version pinned in tools/lint/go.mod (a `tool`
# directive in a module of its own, so its dependencies stay out of responder's go.mod).
#
# The binary is built once from the Go module proxy and cached by version outside the repository,
# where internal/toolbuild caches the test tools: responder-tools/ beside the Go build cache, as
# golangci-lint-<version>. A warm run only checks that the file is there. Parallel runs build once
# (a lock, a re-check, a build into a temporary file and an atomic rename).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mod="$root/tools/lint"
pkg=github.com/golangci/golangci-lint/v2

# The pinned version, read from go.mod without running the go command (a warm run stays instant).
version=$(awk -v m="$pkg" '$1 == m { print $2 } $1 == "require" && $2 == m { print $3 }' "$mod/go.mod" | head -n 1)
if [[ -z "$version" ]]; then
	echo "golangci-lint.sh: no $pkg in $mod/go.mod" >&2
	exit 1
fi

gocache=${GOCACHE:-$(go env GOCACHE)}
if [[ -n "$gocache" && "$gocache" != off ]]; then
	cache="$(dirname "$gocache")/responder-tools"
else
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/responder-tools"
fi
bin="$cache/golangci-lint-$version"

if [[ ! -x "$bin" ]]; then
	mkdir -p "$cache"
	exec 9>"$cache/golangci-lint-$version.lock"
	flock 9
	if [[ ! -x "$bin" ]]; then
		echo "golangci-lint.sh: building golangci-lint $version into $cache (once)" >&2
		start=$SECONDS
		tmp=$(mktemp "$cache/.build-golangci-lint-XXXXXX")
		trap 'rm -f "$tmp"' EXIT
		(cd "$mod" && GOWORK=off GOFLAGS='-mod=readonly -buildvcs=false' \
			go build -trimpath -o "$tmp" "$pkg/cmd/golangci-lint")
		mv "$tmp" "$bin"
		trap - EXIT
		echo "golangci-lint.sh: built golangci-lint $version in $((SECONDS - start))s" >&2
	fi
	exec 9>&-
fi

exec "$bin" "$@"
