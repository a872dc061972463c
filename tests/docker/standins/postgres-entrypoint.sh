#!/bin/bash
# Test-only stand-in for the official postgres image's docker-entrypoint.sh.
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"

# `docker run postgres -c fsync=off` means the server with these options.
if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
	exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	chmod 3777 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	user="${POSTGRES_USER:-postgres}"
	db="${POSTGRES_DB:-$user}"
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo "error: database is uninitialized and POSTGRES_PASSWORD is not set" >&2
		exit 1
	fi
	echo "initdb: user $user, database $db, data in $PGDATA"
	initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
		--encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 \
		-D "$PGDATA" >/dev/null
	cat >"$PGDATA/pg_hba.conf" <<-HBA
		local all all trust
		host all all 127.0.0.1/32 trust
		host all all ::1/128 trust
		host all all all scram-sha-256
	HBA
	echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
	if [ "$db" != postgres ]; then
		# A temporary server on the Unix socket only, as the official image does:
		# a healthcheck over TCP does not see it.
		pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
		psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres -q \
			--set db="$db" <<<'CREATE DATABASE :"db";'
		pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	fi
	echo "initdb: done"
fi

exec "$@"
