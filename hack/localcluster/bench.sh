#!/usr/bin/env bash
# Benchmark of the local control plane; prints a markdown table.
#   - build time of the pinned binaries: the last recorded build of each tool ($CACHE/logs/build-times.tsv,
#     written by build.sh); with --cold, times `build.sh k8s etcd kwok` on an EMPTY cache first (downloads
#     modules from the Go proxy and compiles everything: ~20-30 min on 2 cores)
#   - warm start: `cluster.sh up` from no state to 3 Ready, schedulable nodes, binaries cached (RUNS times)
#   - resident memory (RSS) of every control-plane process right after start and after a 30-pod workload
# It runs its own throw-away cluster (state in a temp folder, ports +10000), so a running cluster is untouched.
# Usage: bench.sh [--cold] [RUNS]     (make bench)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

cold=0
[ "${1:-}" = --cold ] && { cold=1; shift; }
runs=${1:-3}
REAL_CACHE=$CACHE
work=$(mktemp -d /tmp/scaledapp-bench.XXXXXX)
export SCALEDAPP_STATE="$work/state"
export LC_ETCD_PORT=12379 LC_ETCD_PEER_PORT=12380 LC_APISERVER_PORT=16443 LC_KCM_PORT=20257 \
  LC_SCHEDULER_PORT=20259 LC_KWOK_PORT=20247
cluster() { "$HERE/cluster.sh" "$@"; }
cleanup() { cluster down >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

now_ms() { date +%s%3N; }

rows=()
if [ $cold = 1 ]; then
  say "cold build: building k8s, etcd and kwok into an empty cache $work/cache (this takes a while) ..."
  t=$(now_ms)
  SCALEDAPP_CACHE="$work/cache" "$HERE/build.sh" k8s etcd kwok >&2 || die "cold build failed"
  rows+=("| cold build of k8s + etcd + kwok (empty module and build caches) | $(( ($(now_ms) - t) / 1000 )) s |")
  export SCALEDAPP_CACHE="$work/cache"
else
  if [ -s "$REAL_CACHE/logs/build-times.tsv" ]; then
    for tool in k8s etcd kwok; do
      line=$(awk -F'\t' -v t="$tool" '$1 == t' "$REAL_CACHE/logs/build-times.tsv" | tail -1)
      if [ -n "$line" ]; then
        IFS=$'\t' read -r _ dir secs when note <<<"$line"
        rows+=("| build of $dir (recorded $when${note:+; $note}) | $secs s |")
      else
        rows+=("| build of $tool | not recorded (run \`bench.sh --cold\`) |")
      fi
    done
  else
    rows+=("| build time | not recorded yet (build.sh records it; or run \`bench.sh --cold\`) |")
  fi
fi

# rss_kb PID: resident set of PID and its descendants, in kB.
rss_kb() {
  local pid=$1 total=0 kid kids
  total=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  read -r -a kids <<<"$(cat "/proc/$pid/task/"*/children 2>/dev/null | tr '\n' ' ')"
  for kid in "${kids[@]}"; do total=$((total + $(rss_kb "$kid"))); done
  echo "${total:-0}"
}

memory_rows() {
  local label=$1 c pid kb sum=0
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler kwok pv-provisioner; do
    pid=$(cat "$SCALEDAPP_STATE/pids/$c.pid")
    kb=$(rss_kb "$pid")
    sum=$((sum + kb))
    rows+=("| RSS $label: $c | $((kb / 1024)) MiB |")
  done
  rows+=("| **RSS $label: control plane total** | **$((sum / 1024)) MiB** |")
}

times=()
for ((i = 1; i <= runs; i++)); do
  cluster down >/dev/null 2>&1 || true
  say "warm start $i/$runs ..."
  t=$(now_ms)
  cluster up >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; die "cluster.sh up failed"; }
  times+=($(( $(now_ms) - t )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
read -r -a s <<<"$sorted"
fmt() { printf '%d.%01d s' $(($1 / 1000)) $((($1 % 1000) / 100)); }
rows+=("| warm start to 3 Ready nodes (\`cluster.sh up\`, empty state, $runs runs): best / median / worst | $(fmt "${s[0]}") / $(fmt "${s[$((runs / 2))]}") / $(fmt "${s[$((runs - 1))]}") |")
t=$(now_ms)
cluster up >/dev/null 2>&1
rows+=("| second \`cluster.sh up\` on a healthy cluster (no-op) | $(fmt $(( $(now_ms) - t ))) |")

memory_rows "idle after start"
# A small workload: 30 pods and 4 bound claims, then measure again.
export KUBECONFIG="$SCALEDAPP_STATE/kubeconfig"
kubectl=$(bin_dir k8s)/kubectl
[ -n "${SCALEDAPP_K8S_BIN:-}" ] && kubectl=$SCALEDAPP_K8S_BIN/kubectl
"$kubectl" create namespace bench >/dev/null
deadline=$((SECONDS + 30))
until "$kubectl" get serviceaccount default -n bench >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || die "no default ServiceAccount in namespace bench after 30s"
  sleep 0.2
done
"$kubectl" create deployment web -n bench --image=registry.invalid/pause:1 --replicas=26 >/dev/null
"$kubectl" apply -n bench -f - >/dev/null <<'EOF'
{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
 "spec": {"replicas": 4, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
  "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "registry.invalid/pause:1"}]}},
  "volumeClaimTemplates": [{"metadata": {"name": "data"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}
EOF
t=$(now_ms)
"$kubectl" wait -n bench --for=condition=Ready pod --all --timeout=120s >/dev/null 2>&1 || true
deadline=$((SECONDS + 120))
until [ "$("$kubectl" get pods -n bench --no-headers 2>/dev/null | grep -c ' 1/1 .*Running')" -ge 30 ]; do
  [ $SECONDS -lt $deadline ] || die "the 30 bench pods were not Running+Ready after 120s"
  sleep 0.2
done
rows+=("| 26-replica Deployment + 4-replica StatefulSet with claims: all 30 pods Ready | $(fmt $(( $(now_ms) - t ))) |")
memory_rows "with 30 pods"

echo
echo "### Local control plane benchmark ($(date -u +%F), $(nproc) cores, k8s v$K8S_VERSION, etcd v$ETCD_VERSION, kwok v$KWOK_VERSION)"
echo
echo "| measurement | value |"
echo "|---|---|"
printf '%s\n' "${rows[@]}"
