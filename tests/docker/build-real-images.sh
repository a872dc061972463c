#!/usr/bin/env bash
# Builds the five images with the real Dockerfile, as `docker compose build`
# would, on a machine with no container registry: the Dockerfile's base images
# are build arguments, and local stand-ins are passed for them:
#   RUST_IMAGE     voting-test/rust:bookworm (Dockerfile.rust: bookworm rootfs,
#                  gcc, and the host's Rust toolchain)
#   RUNTIME_IMAGE  voting-test/runtime-base:<key> (bookworm minbase rootfs, as
#                  debian:bookworm-slim)
# The build itself needs crates.io (cargo install cargo-chef, the dependencies).
# Uses the classic builder (DOCKER_BUILDKIT=0), which the Dockerfile promises to
# support and which every engine has. Tags voting-app/<bin>:latest, the names
# docker-compose.yml uses by default, and prints the sizes and times.
#
#   tests/docker/build-real-images.sh [TARGET...]     (default: all five)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_engine
cd "$REPO_ROOT"
targets=("$@")
((${#targets[@]})) || targets=("${SERVICE_BINARIES[@]}")

# --- the builder stand-in ----------------------------------------------------
toolchain="$(rustc --print sysroot)"
rust_version="$(rustc --version | awk '{print $2}')"
rust_tag="voting-test/rust:$rust_version-bookworm"
if ! docker image inspect "$rust_tag" >/dev/null 2>&1; then
	base="$(base_image builder minbase "gcc,libc6-dev,make,pkg-config,ca-certificates")"
	ctx="$(mktemp -d)"
	trap 'rm -rf "$ctx"' EXIT
	log "assembling $rust_tag from $toolchain (docs left out)"
	mkdir -p "$ctx/toolchain"
	for part in bin lib libexec etc; do
		[ -e "$toolchain/$part" ] && cp -a "$toolchain/$part" "$ctx/toolchain/"
	done
	cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
	cp "$TESTS_DOCKER_DIR/Dockerfile.rust" "$ctx/Dockerfile"
	t0=$SECONDS
	docker_build --build-arg "BASE=$base" -t "$rust_tag" "$ctx" || die "building $rust_tag failed"
	log "$rust_tag built in $((SECONDS - t0))s"
	rm -rf "$ctx"
fi
runtime="$(runtime_image)"

# --- the real Dockerfile ----------------------------------------------------
for target in "${targets[@]}"; do
	log "docker build --target $target (RUST_IMAGE=$rust_tag RUNTIME_IMAGE=$runtime)"
	t0=$SECONDS
	DOCKER_BUILDKIT=0 docker build \
		--build-arg "RUST_IMAGE=$rust_tag" --build-arg "RUNTIME_IMAGE=$runtime" \
		--build-arg "REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
		--target "$target" -t "voting-app/$target:latest" . \
		>"$VOTING_CACHE_DIR/build-$target.log" 2>&1 || {
		tail -n 40 "$VOTING_CACHE_DIR/build-$target.log" >&2
		die "docker build --target $target failed (log: $VOTING_CACHE_DIR/build-$target.log)"
	}
	log "voting-app/$target:latest built in $((SECONDS - t0))s"
done
docker image ls --format 'table {{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^(REPOSITORY|voting-app/|voting-test/)'
