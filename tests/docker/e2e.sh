#!/usr/bin/env bash
# End-to-end test of docker-compose.yml and docker-compose.hits.yml on the local
# Docker engine, with the commands the README gives users.
#
#   tests/docker/e2e.sh
#
# What it does (docs/containers.md says more, and what it does not cover):
#  1. builds the five binaries on the host (cargo build --release) unless
#     VOTING_BIN_DIR names a folder that has them;
#  2. builds the images: stand-ins for the official redis and postgres images and
#     our five images (the real Dockerfile's final stages around the host-built
#     binaries) from a cached Debian bookworm rootfs (lib.sh), because no
#     registry is reachable here;
#  3. runs the real compose files against them, with REDIS_IMAGE, POSTGRES_IMAGE,
#     VOTE_IMAGE, ... and the host ports set through the compose file's own
#     variables, under a project name of its own, so that nothing a developer
#     runs is touched: docker compose up -d, votes, the seed profile, stopping
#     the worker, restarting Redis, re-creating Postgres, kill -9 of the worker
#     in the middle of a seed run, three workers (--scale worker=3) sharing a
#     run of vote changes, and the hit counter surviving a re-created db;
#  4. always ends with `docker compose down -v` (trap).
#
# Traffic goes only to 127.0.0.1 (published ports) and between its own containers.
#
# No Docker engine (`docker info` fails): prints SKIPPED and exits 0, except with
# CI=true, where it fails: CI's machine has an engine, so its absence is a fault.
# With an engine, anything that stops the test from running is a failure.
#
# Settings: VOTING_BIN_DIR (skip the cargo build), VOTING_CACHE_DIR (rootfs cache,
# /var/cache/voting-app), VOTING_E2E_LOG_DIR (service logs on failure),
# VOTING_E2E_KEEP=1 (leave the stacks running after the test, for a look).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_engine
"$TESTS_DOCKER_DIR/install-tools.sh"
cd "$REPO_ROOT"
T_START=$SECONDS
LOG_DIR="${VOTING_E2E_LOG_DIR:-$REPO_ROOT/target/docker-e2e}"
mkdir -p "$LOG_DIR"

# ---------------------------------------------------------------------------
# Binaries and images
if [ -z "${VOTING_BIN_DIR:-}" ]; then
	log "cargo build --release --locked -p vote -p worker -p result -p seed -p hits"
	cargo build --release --locked -p vote -p worker -p result -p seed -p hits ||
		die "cargo build --release failed"
	VOTING_BIN_DIR="$(release_dir)"
fi
t0=$SECONDS
build_standins
build_service_images "$VOTING_BIN_DIR"
log "images ready in $((SECONDS - t0))s"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^voting-test/' | sort >"$LOG_DIR/images.txt"
sed 's/^/  /' "$LOG_DIR/images.txt" >&2

# ---------------------------------------------------------------------------
# Settings of the stacks under test, all through the compose files' variables.
if [ -f "$REPO_ROOT/.env" ]; then
	log "note: $REPO_ROOT/.env exists; the variables below override it, others in it still apply"
fi
export COMPOSE_PROJECT_NAME="votinge2e$$"
HITS_PROJECT="votinghits$$"
VOTE_PORT="$(free_port 15000)"
export VOTE_PORT
RESULT_PORT="$(free_port $((VOTE_PORT + 1)))"
export RESULT_PORT
RESULT_ADMIN_PORT="$(free_port 15858)"
export RESULT_ADMIN_PORT
REDIS_HOST_PORT="$(free_port 16379)"
export REDIS_HOST_PORT
POSTGRES_HOST_PORT="$(free_port 15432)"
export POSTGRES_HOST_PORT
HITS_PORT="$(free_port 15080)"
export HITS_PORT
# Not the defaults, so that a service or healthcheck that ignores them fails here.
export POSTGRES_USER=voting POSTGRES_DB=ballots POSTGRES_PASSWORD="e2e-pw-$RANDOM$RANDOM"
export OPTION_A=Cats OPTION_B=Dogs RUST_LOG=info LOG_FORMAT=text
unset OPTION_C OPTION_D OPTION_E OPTION_F OPTION_G OPTION_H
log "project $COMPOSE_PROJECT_NAME: vote :$VOTE_PORT, result :$RESULT_PORT (admin :$RESULT_ADMIN_PORT)," \
	"redis 127.0.0.1:$REDIS_HOST_PORT, postgres 127.0.0.1:$POSTGRES_HOST_PORT, hits :$HITS_PORT"

VOTE="http://127.0.0.1:$VOTE_PORT"
RESULT="http://127.0.0.1:$RESULT_PORT"
WORK="$(mktemp -d)"
SSE_PIDS=()

dump_logs() {
	local project=$1
	shift
	docker compose -p "$project" "$@" logs --no-color --timestamps >"$LOG_DIR/$project.log" 2>&1 || true
	log "service logs of $project: $LOG_DIR/$project.log (last lines below)"
	tail -n 60 "$LOG_DIR/$project.log" >&2 || true
}

cleanup() {
	local rc=$?
	set +e
	for pid in "${SSE_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	if ((rc != 0 || FAILED != 0)); then
		dump_logs "$COMPOSE_PROJECT_NAME" --profile seed
		dump_logs "$HITS_PROJECT" -f docker-compose.hits.yml
	fi
	if [ "${VOTING_E2E_KEEP:-}" = 1 ]; then
		log "VOTING_E2E_KEEP=1: stacks left running (projects $COMPOSE_PROJECT_NAME, $HITS_PROJECT)"
	else
		docker compose --profile seed down -v --remove-orphans --timeout 10 >/dev/null 2>&1
		docker compose -p "$HITS_PROJECT" -f docker-compose.hits.yml down -v --remove-orphans --timeout 10 >/dev/null 2>&1
		/usr/bin/docker-compose -p "${HITS_PROJECT}v1" -f docker-compose.hits.yml down -v --remove-orphans --timeout 10 >/dev/null 2>&1
	fi
	rm -rf "$WORK"
	log "total time $((SECONDS - T_START))s"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Probes

# health SERVICE -> healthy | starting | unhealthy | none | missing
health() {
	local id
	id="$(docker compose ps -q "$1" 2>/dev/null | head -n 1)"
	[ -n "$id" ] || {
		echo missing
		return
	}
	docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id" 2>/dev/null || echo missing
}
all_healthy() {
	local s
	for s in "$@"; do [ "$(health "$s")" = healthy ] || return 1; done
}
wait_healthy() {
	local secs=$1
	shift
	wait_for "healthy: $*" "$secs" all_healthy "$@" || {
		local s
		for s in "$@"; do log "  $s: $(health "$s")"; done
		return 1
	}
}

# workers_healthy N: exactly N worker containers, each healthy
workers_healthy() {
	local id n=0
	for id in $(docker compose ps -q worker 2>/dev/null); do
		[ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null)" = healthy ] || return 1
		n=$((n + 1))
	done
	[ "$n" = "$1" ]
}

# workers_applied -> votes_applied_total of each worker that applied any, from
# its /metrics (the admin port is not published; bash's /dev/tcp in the image)
workers_applied() {
	local id n
	for id in $(docker compose ps -q worker 2>/dev/null); do
		n="$(docker exec "$id" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5858 &&
			printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null |
			sed -n 's/^votes_applied_total \([0-9]*\).*/\1/p')"
		[ "${n:-0}" -gt 0 ] && printf '%s ' "$n"
	done
	true
}

psql_q() {
	PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -p "$POSTGRES_HOST_PORT" -U "$POSTGRES_USER" \
		-d "$POSTGRES_DB" -XAtq -v ON_ERROR_STOP=1 -c "$1"
}
# db_counts -> "a=N b=M total=T", from the original result query on `votes`
db_counts() {
	local rows a=0 b=0 vote count
	rows="$(psql_q 'SELECT vote, COUNT(id) AS count FROM votes GROUP BY vote' 2>/dev/null)" || return 1
	while IFS='|' read -r vote count; do
		case "$vote" in
		a) a=$count ;;
		b) b=$count ;;
		esac
	done <<<"$rows"
	echo "a=$a b=$b"
}
db_is() { [ "$(db_counts)" = "$1" ]; }
queue_len() { redis-cli -h 127.0.0.1 -p "$REDIS_HOST_PORT" llen votes; }
queue_is() { [ "$(queue_len 2>/dev/null)" = "$1" ]; }

# sse_snapshot -> the last `data:` JSON result's /events sends within 2 s of connecting
sse_snapshot() {
	{ curl -sN --max-time 2 "$RESULT/events" || true; } | sed -n 's/^data: *//p' | tail -n 1
}
# sse_is "a=N b=M": the tallies result pushes on connect
sse_is() {
	local json
	json="$(sse_snapshot)"
	[ -n "$json" ] && [ "$(jq -r '"a=\(.counts.a) b=\(.counts.b)"' <<<"$json")" = "$1" ]
}
# sse_listen NAME: a client that stays connected; sse_seen NAME "a=N b=M" asks
# whether it received that state (pushed, not read on connect).
sse_listen() {
	curl -sN --max-time 120 "$RESULT/events" >"$WORK/sse-$1.log" 2>&1 &
	SSE_PIDS+=($!)
	wait_for "SSE stream $1 open" 10 grep -q '^data:' "$WORK/sse-$1.log"
}
sse_seen() {
	sed -n 's/^data: *//p' "$WORK/sse-$1.log" | jq -r '"a=\(.counts.a) b=\(.counts.b)"' 2>/dev/null | grep -qx "$2"
}

# vote JAR OPTION -> HTTP status of POST / with that browser's cookies
vote() {
	curl -sS -o "$WORK/last-vote.html" -w '%{http_code}' -b "$WORK/$1.jar" -c "$WORK/$1.jar" \
		--data-urlencode "vote=$2" "$VOTE/" 2>/dev/null || echo 000
}
vote_ok() { [ "$(vote "$1" "$2")" = 200 ]; }
# votes_from_new_voters OPTION N: N POSTs without cookies; prints how many got 200
votes_from_new_voters() {
	local ok=0 i
	for ((i = 0; i < $2; i++)); do
		[ "$(curl -sS -o /dev/null -w '%{http_code}' --data-urlencode "vote=$1" "$VOTE/" 2>/dev/null)" = 200 ] && ok=$((ok + 1))
	done
	echo "$ok"
}
http_status() { curl -sS -o /dev/null -w '%{http_code}' "$@" 2>/dev/null || echo 000; }

expect_state() { # DESCRIPTION "a=N b=M" SECONDS : db and SSE both reach it
	check "$1: votes table has $2" wait_for "db $2" "$3" db_is "$2"
	check "$1: result /events reports $2" wait_for "sse $2" "$3" sse_is "$2"
	check "$1: the Redis queue is empty" wait_for "queue empty" "$3" queue_is 0
}

# ---------------------------------------------------------------------------
log "== docker compose up -d"
t0=$SECONDS
docker compose up -d --quiet-pull 2>"$WORK/up.err" || {
	cat "$WORK/up.err" >&2
	die "docker compose up -d failed"
}
check "docker compose up -d: all five services healthy" wait_healthy 180 redis db vote result worker
log "stack healthy $((SECONDS - t0))s after up -d"

hardened() {
	local s id
	for s in vote result worker; do
		id="$(docker compose ps -q "$s")"
		[ "$(docker inspect -f '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}}' "$id")" = "10001:10001 true [ALL]" ] || return 1
	done
}
check "vote, result, worker run as 10001:10001, read-only, all capabilities dropped" hardened

status="$(http_status -c "$WORK/alice.jar" "$VOTE/")"
check "GET / on vote answers 200 ($status)" test "$status" = 200
curl -sS "$VOTE/" >"$WORK/vote.html" 2>/dev/null || true
check "the vote page shows both options" bash -c "grep -q Cats '$WORK/vote.html' && grep -q Dogs '$WORK/vote.html'"
check "the vote page sets a voter_id cookie" grep -q voter_id "$WORK/alice.jar"
check "GET / on result answers 200" test "$(http_status "$RESULT/")" = 200
check "result's admin port: /healthz 200" test "$(http_status "http://127.0.0.1:$RESULT_ADMIN_PORT/healthz")" = 200
check "result's admin port: /metrics 200" test "$(http_status "http://127.0.0.1:$RESULT_ADMIN_PORT/metrics")" = 200
check "a vote that is no option gets 400" test "$(vote mallory z)" = 400

log "== votes from three browsers"
sse_listen first
check "alice votes a" vote_ok alice a
check "bob votes b" vote_ok bob b
check "carol votes a" vote_ok carol a
check "carol changes her vote to b" vote_ok carol b
expect_state "three voters" "a=1 b=2" 20
check "an open /events stream was pushed a=1 b=2" wait_for "push a=1 b=2" 10 sse_seen first "a=1 b=2"
check "one row per voter in votes" test "$(psql_q 'SELECT count(*) FROM votes')" = 3

log "== docker compose --profile seed run --rm seed"
t0=$SECONDS
check "seed run exits 0" quiet docker compose --profile seed run --rm seed
log "seed run took $((SECONDS - t0))s"
expect_state "after the seed" "a=2001 b=1002" 60

log "== docker compose stop worker; votes queue up; docker compose restart redis"
check "docker compose stop worker" quiet docker compose stop worker
n="$(votes_from_new_voters a 100)"
check "100 votes accepted while the worker is stopped ($n)" test "$n" = 100
check "they wait in Redis (llen votes = 100)" wait_for "queue 100" 10 queue_is 100
check "docker compose restart redis" quiet docker compose restart redis
check "redis healthy again" wait_healthy 60 redis
check "the 100 queued votes survived the Redis restart" queue_is 100
check "vote accepts votes again after the Redis restart" wait_for "vote after redis restart" 30 vote_ok dave b
check "docker compose start worker" quiet docker compose start worker
check "worker healthy again" wait_healthy 60 worker
expect_state "after worker stop and Redis restart" "a=2101 b=1003" 60

log "== docker compose rm -sf db; docker compose up -d db"
before="$(db_counts)"
check "docker compose rm -sf db" quiet docker compose rm -sf db
check "docker compose up -d db" quiet docker compose up -d db
check "db healthy again" wait_healthy 120 db
check "votes kept on the db-data volume ($before)" wait_for "db $before" 30 db_is "$before"
sse_listen afterdb
check "a vote after re-creating db is counted" vote_ok erin a
expect_state "after re-creating db" "a=2102 b=1003" 60
check "result pushed it on a stream opened after the db came back" wait_for "push" 20 sse_seen afterdb "a=2102 b=1003"

log "== kill -s KILL worker in the middle of a seed run"
# At most 1000 votes/s, so that the run lasts long enough to be interrupted.
docker compose --profile seed run --rm seed --rate 1000 >"$WORK/seed2.log" 2>&1 &
seed_pid=$!
# Kill as soon as the worker has moved a first part of this run.
wait_for "worker busy with the seed" 60 bash -c "
	c=\$(PGPASSWORD='$POSTGRES_PASSWORD' psql -h 127.0.0.1 -p $POSTGRES_HOST_PORT -U $POSTGRES_USER -d $POSTGRES_DB -XAtqc 'SELECT count(*) FROM votes')
	[ \"\$c\" -gt 3405 ]" || true
seed_running=no
kill -0 "$seed_pid" 2>/dev/null && seed_running=yes
check "docker compose kill -s KILL worker" quiet docker compose kill -s KILL worker
log "worker killed at $(db_counts) in the db, queue $(queue_len), seed still sending: $seed_running"
seed_rc=0
wait "$seed_pid" || seed_rc=$?
check "second seed run exits 0 (exit $seed_rc)" test "$seed_rc" = 0
[ "$seed_rc" = 0 ] || tail -n 20 "$WORK/seed2.log" >&2
check "docker compose start worker" quiet docker compose start worker
check "worker healthy again" wait_healthy 60 worker
expect_state "after kill -9 of the worker" "a=4102 b=2003" 90
check "nothing counted twice: one row per voter" test "$(psql_q 'SELECT count(*) FROM votes')" = 6105

log "== docker compose up -d --scale worker=3; 3,000 votes from 300 voters who change their minds"
check "docker compose up -d --scale worker=3 worker" quiet docker compose up -d --scale worker=3 worker
check "three worker containers, all healthy" wait_for "3 workers healthy" 90 workers_healthy 3
# --verify follows result's /events until each of the 300 voters is counted
# with their last vote, on top of what was there: the three workers share the
# queue, and a replayed or reordered older vote must not win.
check "seed --scenario changes --verify with three workers (exit 0)" \
	quiet docker compose --profile seed run --rm seed --scenario changes --verify
applied="$(workers_applied)"
log "votes_applied_total of each worker since it started: $applied"
check "more than one worker moved votes ($applied)" test "$(wc -w <<<"$applied")" -ge 2
check "one row per voter after the three workers (6105 + 300)" test "$(psql_q 'SELECT count(*) FROM votes')" = 6405
check "the Redis queue is empty" wait_for "queue empty" 30 queue_is 0

log "== docker compose down -v"
check "docker compose down -v" quiet docker compose --profile seed down -v --remove-orphans --timeout 10
check "its volumes are gone" test -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")"

# ---------------------------------------------------------------------------
# The hit counter, with compose v2 and then with docker-compose 1.29.
hits_body() { curl -sS --max-time 5 "http://127.0.0.1:$HITS_PORT/" 2>/dev/null; }
hits_says() { [ "$(hits_body)" = "Hello World! I have been seen $1 times." ]; }
HITS_DC=()
hits_healthy() {
	local svc id
	for svc in app db; do
		id="$("${HITS_DC[@]}" ps -q "$svc" 2>/dev/null | head -n 1)"
		[ -n "$id" ] || return 1
		[ "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] || return 1
	done
}
hits_200() {
	[ "$(curl -sS -o "$WORK/hits-first.txt" -w '%{http_code}' --max-time 5 "http://127.0.0.1:$HITS_PORT/" 2>/dev/null)" = 200 ]
}
hits_503() { [ "$(http_status --max-time 5 "http://127.0.0.1:$HITS_PORT/")" = 503 ]; }
hits_test() {
	local label=$1
	shift
	HITS_DC=("$@")
	log "== hit counter ($label): up -d"
	check "$label: up -d" quiet "${HITS_DC[@]}" up -d
	check "$label: app and db healthy" wait_for "hits healthy" 90 hits_healthy
	hits_body >/dev/null || true
	hits_body >/dev/null || true
	check "$label: GET / counts (3rd visit says 3 times)" hits_says 3
	check "$label: rm -sf db" quiet "${HITS_DC[@]}" rm -sf db
	check "$label: 503 while its Redis is gone" wait_for "hits 503" 20 hits_503
	check "$label: up -d db" quiet "${HITS_DC[@]}" up -d db
	# The first answer after db is back must say 4: retrying until a body says 4
	# would hide a count that restarted from 0.
	check "$label: db answers again" wait_for "hits 200" 60 hits_200
	check "$label: the count survived re-creating db (4th visit says 4 times)" \
		test "$(cat "$WORK/hits-first.txt")" = "Hello World! I have been seen 4 times."
	check "$label: down -v" quiet "${HITS_DC[@]}" down -v --timeout 10
}
hits_test "compose v2" docker compose -p "$HITS_PROJECT" -f docker-compose.hits.yml
if [ -x /usr/bin/docker-compose ]; then
	hits_test "docker-compose 1.29" /usr/bin/docker-compose -p "${HITS_PROJECT}v1" -f docker-compose.hits.yml
fi

report docker-e2e
