#!/bin/sh
# Test-only stand-in for the official redis image's docker-entrypoint.sh.
set -eu

# `docker run redis --appendonly yes` and `docker run redis my.conf` mean redis-server.
case "${1:-}" in
-* | *.conf) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = redis-server ]; then
	if [ "$(id -u)" = 0 ]; then
		# The volume may have been created by another user id: take it.
		find /data \! -user redis -exec chown redis:redis '{}' +
		exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
	fi
	shift
	# The official image is compiled with protected mode off, so that other
	# containers can connect without a password; Debian's redis-server is not.
	# A config file must come first; the command line can still override these.
	if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
		conf=$1
		shift
		set -- redis-server "$conf" --protected-mode no --bind '*' "$@"
	else
		set -- redis-server --protected-mode no --bind '*' "$@"
	fi
fi
exec "$@"
