# Shared helpers of the container tests (sourced, not run).
#
# Images are made from Debian bookworm root filesystems built with mmdebstrap,
# because no container registry is reachable here: no official image can be
# pulled. Everything is cached:
#   $VOTING_CACHE_DIR/rootfs-<name>-<key>.tar   (key = hash of what goes in)
#   images voting-test/<name>-base:<key>        (docker import of the tarball)
# so a second run builds nothing that did not change.
# shellcheck shell=bash

# A failure inside $(...) stops the script too, as set -e does elsewhere.
shopt -s inherit_errexit

VOTING_CACHE_DIR="${VOTING_CACHE_DIR:-/var/cache/voting-app}"
TESTS_DOCKER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TESTS_DOCKER_DIR/../.." && pwd)"
SUITE=bookworm

# Root filesystem contents. "db" backs the Redis and Postgres stand-ins; "runtime"
# backs our services, as debian:bookworm-slim does in the real Dockerfile.
ROOTFS_DB_VARIANT=minbase
ROOTFS_DB_PACKAGES="redis-server,postgresql-15,ca-certificates"
ROOTFS_RUNTIME_VARIANT=minbase
ROOTFS_RUNTIME_PACKAGES="ca-certificates"
# Documentation, manuals and translations are left out, as in Debian's -slim images.
MMDEBSTRAP_SLIM_OPTS=(
	--dpkgopt='path-exclude=/usr/share/man/*'
	--dpkgopt='path-exclude=/usr/share/doc/*'
	--dpkgopt='path-include=/usr/share/doc/*/copyright'
	--dpkgopt='path-exclude=/usr/share/locale/*'
	--dpkgopt='path-exclude=/usr/share/info/*'
)
# Debian's postgresql package creates a cluster "main" on installation; the
# stand-in entrypoint runs initdb itself, into the data volume.
# shellcheck disable=SC2016 # expanded by mmdebstrap, not here
ROOTFS_DB_HOOK='rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15"'

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
	printf '\nFAILED: %s\n' "$*" >&2
	exit 1
}

# Runs the classic builder whatever the CLI's default: it is what every engine has,
# and what the Dockerfile promises to work with.
# The legacy builder's deprecation notice goes to stderr on every call: dropped.
docker_build() {
	local out
	if ! out="$(DOCKER_BUILDKIT=0 docker build "$@" 2>&1)"; then
		printf '%s\n' "$out" | tail -n 40 >&2
		return 1
	fi
}

_key() { printf '%s\n' "$@" "${MMDEBSTRAP_SLIM_OPTS[@]}" | sha256sum | cut -c1-12; }

# rootfs NAME VARIANT PACKAGES [HOOK] -> prints the path of the cached tarball
rootfs() {
	local name=$1 variant=$2 packages=$3 hook=${4:-}
	local key tar
	key="$(_key "$SUITE" "$variant" "$packages" "$hook")"
	tar="$VOTING_CACHE_DIR/rootfs-$name-$key.tar"
	if [ ! -s "$tar" ]; then
		command -v mmdebstrap >/dev/null || die "mmdebstrap not found: run tests/docker/install-tools.sh"
		mkdir -p "$VOTING_CACHE_DIR"
		log "mmdebstrap $SUITE ($variant + $packages) -> $tar"
		local args=(--variant="$variant" "${MMDEBSTRAP_SLIM_OPTS[@]}")
		[ -n "$packages" ] && args+=(--include="$packages")
		[ -n "$hook" ] && args+=(--customize-hook="$hook")
		# mmdebstrap picks the output format from the file name: keep ".tar".
		local tmp="${tar%.tar}.partial.tar"
		if ! mmdebstrap --quiet "${args[@]}" "$SUITE" "$tmp" >"$VOTING_CACHE_DIR/mmdebstrap-$name.log" 2>&1; then
			tail -n 30 "$VOTING_CACHE_DIR/mmdebstrap-$name.log" >&2
			rm -rf "$tmp"
			die "mmdebstrap failed (log: $VOTING_CACHE_DIR/mmdebstrap-$name.log)"
		fi
		mv "$tmp" "$tar"
	fi
	printf '%s\n' "$tar"
}

# base_image NAME VARIANT PACKAGES [HOOK] -> prints the tag of the imported image
base_image() {
	local tar tag
	tar="$(rootfs "$@")"
	tag="voting-test/$1-base:$(basename "$tar" .tar | sed 's/.*-//')"
	if ! docker image inspect "$tag" >/dev/null 2>&1; then
		log "docker import $tar as $tag"
		docker import --change 'CMD ["bash"]' "$tar" "$tag" >/dev/null || die "docker import of $tar failed"
	fi
	printf '%s\n' "$tag"
}

# Builds voting-test/redis:local and voting-test/postgres:local, stand-ins for
# the official images. Sets REDIS_IMAGE and POSTGRES_IMAGE.
build_standins() {
	local base
	base="$(base_image db "$ROOTFS_DB_VARIANT" "$ROOTFS_DB_PACKAGES" "$ROOTFS_DB_HOOK")"
	log "building stand-in images on $base"
	docker_build --build-arg "BASE=$base" -f "$TESTS_DOCKER_DIR/standins/Dockerfile.redis" \
		-t voting-test/redis:local "$TESTS_DOCKER_DIR/standins" >/dev/null || die "building the redis stand-in failed"
	docker_build --build-arg "BASE=$base" -f "$TESTS_DOCKER_DIR/standins/Dockerfile.postgres" \
		-t voting-test/postgres:local "$TESTS_DOCKER_DIR/standins" >/dev/null || die "building the postgres stand-in failed"
	export REDIS_IMAGE=voting-test/redis:local POSTGRES_IMAGE=voting-test/postgres:local
}

# The runtime base for our services (what RUNTIME_IMAGE is in the Dockerfile).
runtime_image() {
	base_image runtime "$ROOTFS_RUNTIME_VARIANT" "$ROOTFS_RUNTIME_PACKAGES"
}

# Where cargo puts release binaries (honours CARGO_TARGET_DIR and .cargo/config).
release_dir() {
	local dir
	dir="$(cd "$REPO_ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | jq -r .target_directory)" ||
		dir="$REPO_ROOT/target"
	[ -n "$dir" ] && [ "$dir" != null ] || dir="$REPO_ROOT/target"
	printf '%s/release\n' "$dir"
}

SERVICE_BINARIES=(vote worker result seed hits)

# Builds voting-test/<bin>:e2e for the five binaries from the ones compiled on the
# host, with the final stages of the real Dockerfile (everything from its
# `runtime` stage on), so users, entrypoints, healthchecks, ports and the
# seed-data folder are exactly those of the real images. Only the builder stage
# is replaced (Dockerfile.local). Sets VOTE_IMAGE, WORKER_IMAGE, ...
build_service_images() {
	local bindir=$1 runtime ctx bin
	runtime="$(runtime_image)"
	ctx="$(mktemp -d)"
	mkdir -p "$ctx/bin"
	for bin in "${SERVICE_BINARIES[@]}"; do
		[ -x "$bindir/$bin" ] || die "binary $bindir/$bin not found: cargo build --release -p $bin"
		cp "$bindir/$bin" "$ctx/bin/$bin"
	done
	cp -r "$REPO_ROOT/seed-data" "$ctx/seed-data"
	{
		cat "$TESTS_DOCKER_DIR/Dockerfile.local"
		sed -n '/^FROM \${RUNTIME_IMAGE} AS runtime/,$p' "$REPO_ROOT/Dockerfile"
	} >"$ctx/Dockerfile"
	# shellcheck disable=SC2016 # a literal ${RUNTIME_IMAGE}
	grep -q '^FROM \${RUNTIME_IMAGE} AS runtime' "$ctx/Dockerfile" ||
		die "the Dockerfile has no 'FROM \${RUNTIME_IMAGE} AS runtime' stage to reuse"
	for bin in "${SERVICE_BINARIES[@]}"; do
		log "building voting-test/$bin:e2e (target $bin, RUNTIME_IMAGE=$runtime)"
		docker_build --build-arg "RUNTIME_IMAGE=$runtime" --build-arg "REVISION=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
			--target "$bin" -t "voting-test/$bin:e2e" "$ctx" >/dev/null ||
			die "docker build of voting-test/$bin:e2e failed"
	done
	rm -rf "$ctx"
	export VOTE_IMAGE=voting-test/vote:e2e WORKER_IMAGE=voting-test/worker:e2e \
		RESULT_IMAGE=voting-test/result:e2e SEED_IMAGE=voting-test/seed:e2e HITS_IMAGE=voting-test/hits:e2e
}

# free_port PREFERRED -> the first port from PREFERRED on that nothing listens on
free_port() {
	local p=$1
	while ss -Htln "sport = :$p" | grep -q .; do p=$((p + 1)); done
	printf '%s\n' "$p"
}

# wait_for DESCRIPTION SECONDS COMMAND... : runs COMMAND until it succeeds or time is up
wait_for() {
	local what=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "timed out after ${secs}s waiting for: $what"
			return 1
		fi
		sleep 0.5
	done
}

# check DESCRIPTION COMMAND... : one test assertion, counted and reported.
PASSED=0
FAILED=0
FAILURES=()
check() {
	local what=$1
	shift
	if "$@"; then
		PASSED=$((PASSED + 1))
		log "ok   $what"
	else
		FAILED=$((FAILED + 1))
		FAILURES+=("$what")
		log "FAIL $what"
	fi
}

# Prints the closing line (read by CI) and returns non-zero when a check failed.
report() {
	local name=$1
	if ((FAILED)); then
		printf '\n%s failed:\n' "$name" >&2
		printf '  - %s\n' "${FAILURES[@]}" >&2
	fi
	printf '%s: %d passed, %d failed\n' "$name" "$PASSED" "$FAILED"
	((FAILED == 0))
}

# Fails (CI=true) or skips (elsewhere) when no Docker engine answers.
require_engine() {
	command -v docker >/dev/null || no_engine "no docker CLI on PATH"
	docker info >/dev/null 2>&1 || no_engine "docker info failed: no Docker engine answers"
}
no_engine() {
	if [ "${CI:-}" = true ]; then
		die "$1 (CI=true: the container tests must run on CI's machine)"
	fi
	printf 'SKIPPED container tests: %s\n' "$1" >&2
	exit 0
}

# quiet COMMAND... : runs COMMAND, shows its output only when it fails.
quiet() {
	local out
	out="$("$@" 2>&1)" || {
		printf '%s\n' "$out" | tail -n 20 >&2
		return 1
	}
}
