#!/bin/sh
# Healthcheck for the db service (docker-compose.yml).
#
# A fixed version of the original voting app's script: POSIX sh (no bash, no
# `pipefail`), 127.0.0.1 rather than `hostname -i`, and the user and database
# the container was created with (POSTGRES_USER, POSTGRES_DB), as the official
# image's entrypoint uses them.
#
# Why TCP on 127.0.0.1 and not the Unix socket: while the official image runs
# its first-start initialisation it starts a temporary server that listens on
# the socket only. Asking over TCP reports healthy only once the real server is
# up, so services that depend on `service_healthy` never race the init scripts.
set -eu

user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
port="${PGPORT:-5432}"
# Connections from 127.0.0.1 are trusted by the official image's pg_hba.conf;
# the password is passed anyway for images configured otherwise.
if [ -n "${POSTGRES_PASSWORD:-}" ]; then
	export PGPASSWORD="$POSTGRES_PASSWORD"
fi

if out="$(psql --host 127.0.0.1 --port "$port" --username "$user" --dbname "$db" \
	--no-password --quiet --no-align --tuples-only --command 'SELECT 1' 2>&1)" \
	&& [ "$out" = "1" ]; then
	exit 0
fi
echo "postgres on 127.0.0.1:$port (user $user, database $db) answered: $out" >&2
exit 1
