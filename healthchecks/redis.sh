#!/bin/sh
# Healthcheck for the redis service (docker-compose.yml).
#
# A fixed version of the original voting app's script: POSIX sh (the official
# images' /bin/sh is busybox ash or dash, neither has `pipefail`), and
# 127.0.0.1 rather than `hostname -i`, which prints several addresses on a
# container attached to more than one network (or an IPv6 one) and then fails.
#
# Healthy only when the server answers PING with PONG: while Redis is still
# loading its append-only file it answers "LOADING ..." and is not ready yet.
# REDISCLI_AUTH, if set in the container, is used by redis-cli as the password.
set -eu

port="${REDIS_PORT:-6379}"

if reply="$(redis-cli -h 127.0.0.1 -p "$port" ping 2>&1)" && [ "$reply" = "PONG" ]; then
	exit 0
fi
echo "redis on 127.0.0.1:$port answered: $reply" >&2
exit 1
