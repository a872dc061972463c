#!/usr/bin/env bash
# Checks the Redis and Postgres stand-in images (see standins/) on their own,
# the way docker-compose.yml uses them, before the end-to-end test relies on
# them: password auth over TCP, POSTGRES_USER/DB honoured by the entrypoint and
# by healthchecks/postgres.sh, data kept on the volume across a re-creation,
# Redis reachable from another container, append-only file kept on /data.
# Traffic only to 127.0.0.1 and between the test's own containers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_engine
build_standins

id="vtstandins$$"
net="$id-net"
pgport="$(free_port 25432)"
redisport="$(free_port 26379)"
cleanup() {
	docker rm -f "$id-pg" "$id-redis" >/dev/null 2>&1 || true
	docker volume rm "$id-pgdata" "$id-redisdata" >/dev/null 2>&1 || true
	docker network rm "$net" >/dev/null 2>&1 || true
}
trap cleanup EXIT
docker network create "$net" >/dev/null

start_pg() {
	docker run -d --name "$id-pg" --network "$net" --network-alias db \
		-e POSTGRES_USER=alice -e POSTGRES_PASSWORD='s3cret pw' -e POSTGRES_DB=ballots \
		-v "$id-pgdata:/var/lib/postgresql/data" -v "$REPO_ROOT/healthchecks:/healthchecks:ro" \
		-p "127.0.0.1:$pgport:5432" "$POSTGRES_IMAGE" >/dev/null
}
start_redis() {
	docker run -d --name "$id-redis" --network "$net" --network-alias redis \
		-v "$id-redisdata:/data" -v "$REPO_ROOT/healthchecks:/healthchecks:ro" \
		-p "127.0.0.1:$redisport:6379" "$REDIS_IMAGE" redis-server --appendonly yes >/dev/null
}
pg_healthy() { docker exec "$id-pg" sh /healthchecks/postgres.sh; }
redis_healthy() { docker exec "$id-redis" sh /healthchecks/redis.sh; }
psql_host() { PGPASSWORD="$1" psql -h 127.0.0.1 -p "$pgport" -U alice -d ballots -XAtq -c "$2"; }

start_pg
start_redis
check "postgres healthcheck script passes (POSTGRES_USER/POSTGRES_DB honoured)" wait_for "postgres healthy" 60 pg_healthy
check "redis healthcheck script passes" wait_for "redis healthy" 30 redis_healthy

check "psql from the host with the password" test "$(psql_host 's3cret pw' 'SELECT current_user || current_database()')" = aliceballots
check "a wrong password is refused over TCP" bash -c "! PGPASSWORD=wrong psql -h 127.0.0.1 -p $pgport -U alice -d ballots -XAtqc 'SELECT 1' 2>/dev/null"
check "another container connects by name with the password" \
	quiet docker run --rm --network "$net" -e PGPASSWORD='s3cret pw' "$POSTGRES_IMAGE" psql -h db -U alice -d ballots -XAtqc 'SELECT 1'
psql_host 's3cret pw' 'CREATE TABLE votes (id varchar(255) NOT NULL UNIQUE, vote varchar(255) NOT NULL); INSERT INTO votes VALUES (chr(118)||1, chr(97))'

check "redis answers on the host's loopback" test "$(redis-cli -h 127.0.0.1 -p "$redisport" ping)" = PONG
check "redis accepts another container (protected mode off)" \
	quiet docker run --rm --network "$net" "$REDIS_IMAGE" redis-cli -h redis rpush votes '{"voter_id":"x","vote":"a"}'
check "redis runs with appendonly yes from the command line" \
	test "$(redis-cli -h 127.0.0.1 -p "$redisport" config get appendonly | tail -n 1)" = yes

# Re-create both containers on the same volumes: data must still be there.
t0=$SECONDS
docker rm -f "$id-pg" "$id-redis" >/dev/null
start_pg
start_redis
check "postgres healthy again on the existing volume (no second initdb)" wait_for "postgres healthy" 60 pg_healthy
check "the row survived re-creating the postgres container" test "$(psql_host 's3cret pw' 'SELECT vote FROM votes')" = a
check "redis healthy again" wait_for "redis healthy" 30 redis_healthy
check "the queued message survived re-creating the redis container" \
	test "$(redis-cli -h 127.0.0.1 -p "$redisport" llen votes)" = 1
log "re-created both in $((SECONDS - t0))s"

t0=$SECONDS
docker stop -t 20 "$id-pg" "$id-redis" >/dev/null
check "postgres and redis stop on the stop signal well within the timeout" test $((SECONDS - t0)) -lt 15
check "postgres exited cleanly" test "$(docker inspect -f '{{.State.ExitCode}}' "$id-pg")" = 0
check "redis exited cleanly" test "$(docker inspect -f '{{.State.ExitCode}}' "$id-redis")" = 0

report standins-test
