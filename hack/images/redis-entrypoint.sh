#!/bin/sh
# The entrypoint of the local stand-in for docker.io/library/redis:7.4.2-alpine (hack/images/build.sh), which is
# Debian's redis-server. Like upstream's docker-entrypoint.sh, option arguments (`--maxmemory ...`) or a config
# file as the first argument run `redis-server` with them. Unlike upstream's it never switches users (the pods set
# runAsUser). Upstream's image is built with protected mode off; Debian's redis-server has it on, which refuses
# every client from outside the pod: without a config file, `--protected-mode no` comes first (a later
# `--protected-mode yes` still wins).
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "${2:-}" = "${2%.conf}" ]; then
	shift
	set -- redis-server --protected-mode no "$@"
fi
exec "$@"
