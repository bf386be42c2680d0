# Shared by the local-cluster scripts: where things live and how to say what is happening.
# shellcheck shell=bash
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE="${SCALEDAPP_CACHE:-$HOME/.cache/scaledapp}"
# shellcheck disable=SC2034  # used by the scripts that source this file
STATE="${SCALEDAPP_STATE:-$ROOT/.localcluster}"
# The kwok cluster has a folder and ports of its own by default, so it can run beside the real one.
KWOK_BESIDE_REAL=0
if [ "${LC_NODES:-}" = kwok ] && [ -z "${SCALEDAPP_STATE:-}" ]; then STATE="$ROOT/.localcluster-kwok" KWOK_BESIDE_REAL=1; fi
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/go-build"

# Colours only on a terminal (the pytest fixtures quote these messages).
if [ -t 2 ]; then _B=$'\033[1;34m' _Y=$'\033[1;33m' _R=$'\033[1;31m' _N=$'\033[0m'; else _B="" _Y="" _R="" _N=""; fi
say() { printf '%s==>%s %s\n' "$_B" "$_N" "$*" >&2; }
warn() { printf '%s!!%s %s\n' "$_Y" "$_N" "$*" >&2; }
die() { printf '%sxx%s %s\n' "$_R" "$_N" "$*" >&2; exit 1; }

# bin_dir TOOL -> the cache folder of TOOL at its pinned version (one folder per pin, so a second build reuses it).
bin_dir() {
  case "$1" in
    k8s) echo "$CACHE/bin/kubernetes-v$K8S_VERSION" ;;
    etcd) echo "$CACHE/bin/etcd-v$ETCD_VERSION" ;;
    kwok) echo "$CACHE/bin/kwok-v$KWOK_VERSION" ;;
    helm) echo "$CACHE/bin/helm-v$HELM_VERSION" ;;
    prometheus) echo "$CACHE/bin/prometheus-v$PROMETHEUS_VERSION" ;;
    postgres-exporter) echo "$CACHE/bin/postgres_exporter-v$POSTGRES_EXPORTER_VERSION" ;;
    redis-exporter) echo "$CACHE/bin/redis_exporter-v$REDIS_EXPORTER_VERSION" ;;
    coredns) echo "$CACHE/bin/coredns-v$COREDNS_VERSION" ;;
    local-path-provisioner) echo "$CACHE/bin/local-path-provisioner-v$LOCAL_PATH_PROVISIONER_VERSION" ;;
    crictl) echo "$CACHE/bin/crictl-v$CRICTL_VERSION" ;;
    *) die "unknown tool $1" ;;
  esac
}

# The PATH that puts every pinned binary first.
pinned_path() {
  local t p=""
  for t in k8s etcd kwok helm prometheus postgres-exporter redis-exporter; do p="$p$(bin_dir "$t"):"; done
  echo "$p$PATH"
}
