#!/usr/bin/env bash
# Install the Debian packages the tests and the demo run for real (Redis, Postgres, HAProxy, openssl).
# As root it installs what is missing with apt-get; otherwise it names what is missing and how to get it.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v haproxy >/dev/null || need+=(haproxy)
command -v openssl >/dev/null || need+=(openssl)
ls /usr/lib/postgresql/*/bin/pg_basebackup >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
command -v runuser >/dev/null || need+=(util-linux)
command -v setpriv >/dev/null || need+=(util-linux)  # setpriv: tests run Postgres as an unprivileged user
command -v useradd >/dev/null || need+=(passwd)
if [ ${#need[@]} -eq 0 ]; then echo "==> system packages: all present (redis-server, haproxy, openssl, postgresql)"; exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts the services it installs; the tests run their own on loopback ports, so stop those.
  for s in redis-server postgresql haproxy; do service "$s" stop >/dev/null 2>&1 || true; done
  echo "==> installed: ${need[*]}"
else
  echo "xx missing Debian packages: ${need[*]}" >&2
  echo "   install them with: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
