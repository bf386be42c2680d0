#!/usr/bin/env bash
# Build the pinned control-plane and data-plane binaries from Go modules into ~/.cache/scaledapp/bin.
# Usage: build.sh [TOOL...]   (default: all; tools: k8s etcd kwok helm prometheus postgres-exporter redis-exporter
#                               coredns local-path-provisioner crictl)
# A tool whose binaries are already cached is not rebuilt. A cold build of everything took 695 s on 2 cores
# (empty module and build caches: `SCALEDAPP_CACHE=/tmp/empty hack/localcluster/build.sh`).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v go >/dev/null || die "no Go toolchain on PATH: install Go >= 1.26 (Debian: apt-get install golang-1.26, or from go.dev) and re-run"
gov=$(go env GOVERSION | sed 's/^go//')
[ "$(printf '%s\n1.26\n' "$gov" | sort -V | head -1)" = "1.26" ] || die "Go $gov is too old: kwok $KWOK_VERSION needs Go >= 1.26"

# build_tool NAME MODULE_DIR "BINARIES" LDFLAGS TAGS PACKAGE...
build_tool() {
  local name=$1 mod=$2 bins=$3 ldflags=$4 tags=$5; shift 5
  local out; out=$(bin_dir "$name")
  local missing=0 b
  for b in $bins; do [ -x "$out/$b" ] || missing=1; done
  if [ $missing = 0 ]; then say "$name: cached in $out"; return 0; fi
  say "$name: building $bins from Go modules (pinned in hack/localcluster/modules/$mod) ..."
  local tmp="$out.tmp.$$" log="$CACHE/logs/build-$name.log" start=$SECONDS
  mkdir -p "$tmp" "$CACHE/logs"
  ( cd "$HERE/modules/$mod" && go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$tmp/" "$@" ) >"$log" 2>&1 &
  local pid=$!
  while kill -0 $pid 2>/dev/null; do
    sleep 5
    kill -0 $pid 2>/dev/null && printf '    %s: still compiling, %ds so far (log: %s)\n' "$name" $((SECONDS - start)) "$log" >&2 && sleep 25
  done
  if ! wait $pid; then tail -n 30 "$log" >&2; rm -rf "$tmp"; die "$name: build failed (full log: $log)"; fi
  rm -rf "$out" && mv "$tmp" "$out"
  # bench.sh reports build times from this file (the compile time with the caches as they were).
  printf '%s\t%s\t%s\t%s\n' "$name" "$(basename "$out")" "$((SECONDS - start))" "$(date -u +%FT%TZ)" \
    >>"$CACHE/logs/build-times.tsv"
  say "$name: built in $((SECONDS - start))s -> $out"
}

k8s_ldflags() {
  local minor; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local p x=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x="$x -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    x="$x -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$x"
}

# One build at a time per cache: a second `make` waits for the first instead of compiling twice.
mkdir -p "$CACHE"
exec 9>"$CACHE/build.lock"
flock -w 3600 9 || die "another build holds $CACHE/build.lock for over an hour"

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(k8s etcd kwok helm prometheus postgres-exporter redis-exporter coredns local-path-provisioner crictl)
total=$SECONDS
for t in "${tools[@]}"; do
  case "$t" in
    k8s) build_tool k8s k8s "kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy" \
           "$(k8s_ldflags)" "" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
           k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
           k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy ;;
    etcd) build_tool etcd etcd "etcd" "" "" go.etcd.io/etcd/server/v3 && \
           { [ -x "$(bin_dir etcd)/etcd" ] || mv "$(bin_dir etcd)/server" "$(bin_dir etcd)/etcd"; } ;;
    kwok) build_tool kwok kwok "kwok" "" "" sigs.k8s.io/kwok/cmd/kwok ;;
    helm) build_tool helm helm "helm" "-X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION \
           -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(echo "$K8S_VERSION" | cut -d. -f2)" "" helm.sh/helm/v3/cmd/helm ;;
    prometheus) build_tool prometheus prometheus "prometheus" "-X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
           "remove_all_sd,enable_kubernetes_sd" github.com/prometheus/prometheus/cmd/prometheus ;;
    postgres-exporter) build_tool postgres-exporter postgres-exporter "postgres_exporter" \
           "-X github.com/prometheus/common/version.Version=$POSTGRES_EXPORTER_VERSION" "" \
           github.com/prometheus-community/postgres_exporter/cmd/postgres_exporter ;;
    redis-exporter) build_tool redis-exporter redis-exporter "redis_exporter" \
           "-X main.BuildVersion=$REDIS_EXPORTER_VERSION" "" github.com/oliver006/redis_exporter ;;
    coredns) build_tool coredns coredns "coredns" "-X github.com/coredns/coredns/coremain.GitCommit=v$COREDNS_VERSION" "" \
           scaledapp.dev/localcluster/coredns ;;
    local-path-provisioner) build_tool local-path-provisioner local-path-provisioner "local-path-provisioner" \
           "-X main.VERSION=v$LOCAL_PATH_PROVISIONER_VERSION" "" github.com/rancher/local-path-provisioner ;;
    crictl) build_tool crictl crictl "crictl" "-X sigs.k8s.io/cri-tools/pkg/version.Version=v$CRICTL_VERSION" "" \
           sigs.k8s.io/cri-tools/cmd/crictl ;;
    *) die "unknown tool '$t' (tools: k8s etcd kwok helm prometheus postgres-exporter redis-exporter coredns local-path-provisioner crictl)" ;;
  esac
done
say "all requested tools ready (${SECONDS}s; total $((SECONDS - total))s)"
