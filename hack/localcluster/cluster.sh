#!/usr/bin/env bash
# The local Kubernetes cluster, without Docker: etcd, kube-apiserver, kube-controller-manager and kube-scheduler as
# plain processes, and either
#   LC_NODES=real (default)  one real node: containerd + runc (Debian), kubelet and kube-proxy (same k8s pin), a
#                            bridge with no uplink, CoreDNS and the local-path provisioner (node.sh); or
#   LC_NODES=kwok            kwok with 3 fake nodes and a tiny PV provisioner: no containers, for scale tests and
#                            private throw-away clusters (only one real node fits a machine).
#
# Usage: cluster.sh up|down|status|env
#   up      start whatever is not running and healthy (a no-op when everything is); wait for Ready nodes
#   down    stop every process it started and remove the state in .localcluster/
#   status  say which components run and are healthy, and which nodes are Ready; exit 1 if anything is not
#   env     print `export KUBECONFIG=...; export PATH=...` (eval "$(hack/localcluster/cluster.sh env)")
#
# State: .localcluster/{pki,etcd,logs/<name>.log,pids/<name>.pid,kubeconfig}. Binaries: ~/.cache/scaledapp/bin
# (`make tools` builds them). Ports can be moved with LC_ETCD_PORT, LC_ETCD_PEER_PORT, LC_APISERVER_PORT,
# LC_KCM_PORT, LC_SCHEDULER_PORT, LC_KWOK_PORT; LC_ADVERTISE_ADDRESS overrides the apiserver's advertised IP.
# SCALEDAPP_K8S_BIN overrides the folder of the kube binaries (default: the pinned cache folder).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=pki.sh
source "$HERE/pki.sh"
# shellcheck source=node.sh
source "$HERE/node.sh"
# shellcheck source=fence.sh
source "$HERE/fence.sh"

# Default ports; LC_NODES=kwok without SCALEDAPP_STATE (the kwok cluster beside the real one) shifts them by 10000.
shift=0; [ "$KWOK_BESIDE_REAL" = 1 ] && shift=10000
ETCD_PORT=${LC_ETCD_PORT:-$((2379 + shift))}
ETCD_PEER_PORT=${LC_ETCD_PEER_PORT:-$((2380 + shift))}
APISERVER_PORT=${LC_APISERVER_PORT:-$((6443 + shift))}
KCM_PORT=${LC_KCM_PORT:-$((10257 + shift))}
SCHEDULER_PORT=${LC_SCHEDULER_PORT:-$((10259 + shift))}
KWOK_PORT=${LC_KWOK_PORT:-$((10247 + shift))}
K8S_BIN=${SCALEDAPP_K8S_BIN:-$(bin_dir k8s)}
ETCD_BIN=$(bin_dir etcd)
KWOK_BIN=$(bin_dir kwok)
KUBECTL="$K8S_BIN/kubectl"
CMD=()
# Admission: the defaults, listed explicitly for the ones the tests rely on.
ADMISSION=NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,DefaultStorageClass
ADMISSION+=,StorageObjectInUseProtection,ResourceQuota,TaintNodesByCondition,Priority
LOGS="$STATE/logs"
PIDS="$STATE/pids"
# The node kind is chosen at `up` and kept in the state folder, so down/status/env act on what runs.
if [ -s "$STATE/nodes" ]; then NODES=$(cat "$STATE/nodes"); else NODES=${LC_NODES:-real}; fi
case "$NODES" in
  real) COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy
          local-path-provisioner) ;;
  kwok) COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok pv-provisioner) ;;
  *) die "LC_NODES=$NODES: expected real or kwok" ;;
esac

kc() { "$KUBECTL" --kubeconfig="$STATE/kubeconfig" --request-timeout=10s "$@"; }

# ---------------------------------------------------------------- processes

# pid_of NAME: the pid from the pid file if that process is alive and still runs NAME's program.
pid_of() {
  local f="$PIDS/$1.pid" pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ -r "/proc/$pid/cmdline" ] || return 1
  local want=$1
  [ "$1" = pv-provisioner ] && want=pv-provisioner.sh
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$want" || return 1
  echo "$pid"
}

# healthy NAME: the component answers its health endpoint (pv-provisioner: its process lives).
healthy() {
  local c=(curl -sf --max-time 2 -o /dev/null)
  case "$1" in
    etcd) "${c[@]}" "http://127.0.0.1:$ETCD_PORT/health" ;;
    kube-apiserver) "${c[@]}" --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
      "https://127.0.0.1:$APISERVER_PORT/readyz" ;;
    kube-controller-manager) "${c[@]}" -k "https://127.0.0.1:$KCM_PORT/healthz" ;;
    kube-scheduler) "${c[@]}" -k "https://127.0.0.1:$SCHEDULER_PORT/healthz" ;;
    kwok) "${c[@]}" "http://127.0.0.1:$KWOK_PORT/healthz" ;;
    pv-provisioner|local-path-provisioner) pid_of "$1" >/dev/null ;;
    containerd) ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 ;;
    kubelet) "${c[@]}" "http://127.0.0.1:10248/healthz" ;;
    kube-proxy) "${c[@]}" "http://127.0.0.1:10256/healthz" ;;
  esac
}

ports_of() {
  case "$1" in
    etcd) echo "$ETCD_PORT $ETCD_PEER_PORT" ;;
    kube-apiserver) echo "$APISERVER_PORT" ;;
    kube-controller-manager) echo "$KCM_PORT" ;;
    kube-scheduler) echo "$SCHEDULER_PORT" ;;
    kwok) echo "$KWOK_PORT" ;;
    kubelet) echo "10250 10248" ;;
    kube-proxy) echo "10256 10249" ;;
    *) echo "" ;;
  esac
}

# check_ports NAME: fail, naming the port and the fix, when a port NAME needs is taken by another process.
# A port held by a process that is just exiting (e.g. a killed apiserver) gets a few seconds to come free.
check_ports() {
  local p owner deadline=$((SECONDS + 5))
  for p in $(ports_of "$1"); do
    while owner=$(ss -Htlnp "sport = :$p" 2>/dev/null | head -1) && [ -n "$owner" ] && [ $SECONDS -lt $deadline ]; do
      sleep 0.2
    done
    [ -z "$owner" ] && continue
    [[ $owner == *users:* ]] && owner="by ${owner##* }" || owner="(process not visible to us)"
    die "$1: port $p is already in use $owner. Stop that process, or move this" \
      "component with LC_$(port_var "$1" "$p")=<free port> (and run 'cluster.sh down' first if it is a stale copy of ours)."
  done
}
port_var() {
  case "$1:$2" in
    etcd:"$ETCD_PEER_PORT") echo ETCD_PEER_PORT ;; etcd:*) echo ETCD_PORT ;;
    kube-apiserver:*) echo APISERVER_PORT ;; kube-controller-manager:*) echo KCM_PORT ;;
    kube-scheduler:*) echo SCHEDULER_PORT ;; kubelet:*|kube-proxy:*) echo "<none: one real node per machine>" ;;
    *) echo KWOK_PORT ;;
  esac
}

# The controllers' own client rate limits (20 and 50 requests/s by default) would make hundreds of fake pods
# queue behind them, not behind the operator under test; lifted as kwokctl does for its scale setups.
CLIENT_QPS="--kube-api-qps=1000 --kube-api-burst=2000"

# command_of NAME: sets CMD to the command line of NAME.
command_of() {
  case "$1" in
    etcd) CMD=("$ETCD_BIN/etcd" --name=localcluster --data-dir="$STATE/etcd" \
      --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster="localcluster=http://127.0.0.1:$ETCD_PEER_PORT" \
      --unsafe-no-fsync=true --quota-backend-bytes=4294967296 --log-level=warn ) ;;
    kube-apiserver) CMD=("$K8S_BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
      --secure-port="$APISERVER_PORT" --advertise-address="$ADVERTISE_ADDRESS" \
      --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
      --client-ca-file="$PKI/ca.crt" --allow-privileged=true \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
      --service-cluster-ip-range=10.96.0.0/16 --profiling=false \
      --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
      --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
      --requestheader-extra-headers-prefix=X-Remote-Extra- \
      --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" )
      if [ "$NODES" = real ]; then
        # Pods reach the apiserver at the node's bridge address (the `kubernetes` Service's endpoint); node.sh's
        # INPUT rules keep it off every other interface. The Node authorizer and NodeRestriction confine the
        # kubelet to its own node; the apiserver verifies the kubelet's serving certificate.
        CMD+=(--bind-address=0.0.0.0 --authorization-mode=Node,RBAC --enable-admission-plugins="$ADMISSION,NodeRestriction"
          --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt"
          --kubelet-client-key="$PKI/apiserver-kubelet-client.key"
          --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP)
      else
        CMD+=(--bind-address=127.0.0.1 --authorization-mode=RBAC --enable-admission-plugins="$ADMISSION")
      fi ;;
    kube-controller-manager) CMD=("$K8S_BIN/kube-controller-manager" \
      --kubeconfig="$PKI/controller-manager.kubeconfig" \
      --authentication-kubeconfig="$PKI/controller-manager.kubeconfig" \
      --authorization-kubeconfig="$PKI/controller-manager.kubeconfig" \
      --controllers='*' \
      --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
      --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
      --leader-elect=false --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
      --pvclaimbinder-sync-period=5s --profiling=false $CLIENT_QPS ) ;;
    kube-scheduler) CMD=("$K8S_BIN/kube-scheduler" --kubeconfig="$PKI/scheduler.kubeconfig" \
      --authentication-kubeconfig="$PKI/scheduler.kubeconfig" --authorization-kubeconfig="$PKI/scheduler.kubeconfig" \
      --leader-elect=false --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --profiling=false $CLIENT_QPS ) ;;
    kwok) CMD=("$KWOK_BIN/kwok" --kubeconfig="$STATE/kubeconfig" --config="$STATE/kwok-stages.yaml" \
      --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake --cidr=10.244.128.0/17 \
      --node-ip=10.240.0.1 --node-lease-duration-seconds=40 --server-address="127.0.0.1:$KWOK_PORT" ) ;;
    pv-provisioner) CMD=("$HERE/pv-provisioner.sh" "$STATE" ) ;;
    containerd) CMD=(containerd --config "$NODE_DIR/containerd.toml" --log-level warn) ;;
    kubelet) CMD=("$K8S_BIN/kubelet" --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$PKI/kubelet.kubeconfig" \
      --root-dir="$NODE_DIR/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1) ;;
    kube-proxy) CMD=("$K8S_BIN/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml" --v=1) ;;
    local-path-provisioner) CMD=("$(bin_dir local-path-provisioner)/local-path-provisioner" start \
      --kubeconfig "$PKI/local-path-provisioner.kubeconfig" --namespace local-path-storage \
      --config "$NODE_DIR/local-path-config.json" --service-account-name local-path-provisioner \
      --helper-image localhost/scaledapp/toolbox:1 --provisioner-name rancher.io/local-path) ;;
  esac
}

# reap_group NAME: stop leftovers of a dead NAME (e.g. the provisioner's kubectl watches after it was killed):
# members of its old process group that are ours (see owned_pids).
reap_group() {
  local old pid
  old=$(cat "$PIDS/$1.pid" 2>/dev/null) || return 0
  for pid in $(owned_pids); do
    [ "$({ awk '{print $5}' "/proc/$pid/stat"; } 2>/dev/null)" = "$old" ] && stop_pid "$pid"
  done
  return 0
}

# start NAME: launch NAME in its own session (so Ctrl-C on a caller does not reach it), logging to its log.
start() {
  local name=$1
  reap_group "$name"
  command_of "$name"
  check_ports "$name"
  printf '\n===== %s: starting %s\n' "$(date -u +%FT%TZ)" "$name" >>"$LOGS/$name.log"
  KUBECTL="$KUBECTL" setsid "${CMD[@]}" >>"$LOGS/$name.log" 2>&1 </dev/null 8>&- &
  echo $! >"$PIDS/$name.pid"
  say "$name: started (pid $!, log $LOGS/$name.log)"
}

# wait_healthy NAME SECONDS: poll NAME's health until the deadline; fail with its log tail if it dies or times out.
wait_healthy() {
  local name=$1 deadline=$((SECONDS + $2))
  until healthy "$name"; do
    if ! pid_of "$name" >/dev/null; then
      tail -n 25 "$LOGS/$name.log" >&2
      die "$name exited during start-up (log above; full log: $LOGS/$name.log)"
    fi
    if [ $SECONDS -ge "$deadline" ]; then
      tail -n 25 "$LOGS/$name.log" >&2
      die "$name not healthy after $2s (log above; full log: $LOGS/$name.log)"
    fi
    sleep 0.2
  done
}

# alive PID: the process exists and is not a zombie (our components are reaped by init, sometimes seconds later).
alive() {
  local state
  state=$({ awk '{print $3}' "/proc/$1/stat"; } 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# stop_pid PID: TERM its process group, then KILL after a deadline.
stop_pid() {
  local pid=$1 deadline=$((SECONDS + 10))
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  while alive "$pid"; do
    if [ $SECONDS -ge "$deadline" ]; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; fi
    sleep 0.1
  done
}

# owned_pids: processes of our binaries (or our provisioner) whose command line names this state folder.
owned_pids() {
  local d pid cmd exe
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = $$ ] && continue
    cmd=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) || continue
    [[ $cmd == *"$STATE/"* || $cmd == *"$STATE "* ]] || continue
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    if [[ $exe == "$CACHE/bin/"* || $exe == "$K8S_BIN/"* || $cmd == *"$HERE/pv-provisioner.sh"* ||
          $exe == */containerd ]]; then
      echo "$pid"
    fi
  done
}

# ---------------------------------------------------------------- helpers for up

require_binaries() {
  [ "$NODES" = real ] && node_require
  local b
  for b in "$ETCD_BIN/etcd" "$K8S_BIN/kube-apiserver" "$K8S_BIN/kube-controller-manager" \
    "$K8S_BIN/kube-scheduler" "$KUBECTL" $([ "$NODES" = kwok ] && echo "$KWOK_BIN/kwok"); do
    [ -x "$b" ] || die "missing $b: build the pinned binaries first with 'make tools' (or: hack/localcluster/build.sh k8s etcd kwok; needs Go >= 1.26)"
  done
}

advertise_address() {
  [ "$NODES" = real ] && { echo "$NODE_IP"; return 0; }
  local ip=${LC_ADVERTISE_ADDRESS:-}
  [ -n "$ip" ] || ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)
  [ -n "$ip" ] || ip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -v -E '^(127\.|::1|$)' | head -1)
  [ -n "$ip" ] || die "no non-loopback IP address found for --advertise-address: set LC_ADVERTISE_ADDRESS=<an IP of this machine>"
  echo "$ip"
}

# The kwok Stage config: node and pod stages shipped in the kwok module (in the Go module cache after a build).
write_kwok_stages() {
  local dir="$GOMODCACHE/sigs.k8s.io/kwok@v$KWOK_VERSION/kustomize/stage" f
  if [ ! -d "$dir" ]; then
    command -v go >/dev/null || die "kwok's stage files are not in $GOMODCACHE: run 'hack/localcluster/build.sh kwok' (needs Go)"
    (cd "$HERE/modules/kwok" && go mod download "sigs.k8s.io/kwok@v$KWOK_VERSION") ||
      die "could not download sigs.k8s.io/kwok@v$KWOK_VERSION for its stage files"
  fi
  {
    echo "# Assembled by cluster.sh from $dir"
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo "---"
      cat "$dir/$f"
    done
  } >"$STATE/kwok-stages.yaml"
}

# nodes_ready: the nodes report Ready=True and no longer carry the node.kubernetes.io/not-ready (or unreachable)
# taint, which the node lifecycle controller lifts a moment after Ready; until then nothing schedules. Other taints
# (a test cordoning a node) do not count. kwok: the 3 fake nodes; real: the node, and cluster DNS answering.
nodes_ready() {
  local out n=0 line want=3 sel=(-l type=kwok)
  [ "$NODES" = real ] && want=1 sel=(-l "kubernetes.io/hostname=$NODE_NAME")
  out=$(kc get nodes "${sel[@]}" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{.spec.taints[*].key}{"\n"}{end}' 2>/dev/null) || return 1
  while read -r line; do
    [ -n "$line" ] || continue
    [[ $line == True* && $line != *node.kubernetes.io/not-ready* && $line != *node.kubernetes.io/unreachable* ]] || return 1
    n=$((n + 1))
  done <<<"$out"
  [ $n -ge $want ] || return 1
  [ "$NODES" = kwok ] || [ "$(kc -n kube-system get deployment coredns -o jsonpath='{.status.readyReplicas}' 2>/dev/null)" = 1 ]
}

all_healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null && healthy "$c" || return 1; done
  nodes_ready
}

# ensure NAME: make sure NAME runs; (re)start it when it is dead or does not become healthy in a few seconds.
ensure() {
  local name=$1 pid
  if pid=$(pid_of "$name"); then
    local deadline=$((SECONDS + 5))
    until healthy "$name" || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
    if healthy "$name"; then say "$name: already running (pid $pid)"; return 0; fi
    warn "$name: pid $pid runs but is not healthy; restarting it"
    stop_pid "$pid"
  fi
  start "$name"
}

# apply_manifest FILE: server-side apply, with the node's folders filled in.
apply_manifest() {
  sed -e "s|@NODE_VOLUMES@|$NODE_DIR/volumes|g" -e "s|@DNS_IP@|$DNS_IP|g" "$1" |
    kc apply --server-side --force-conflicts --field-manager=localcluster -f - >/dev/null ||
    die "could not apply $1"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local t0=$SECONDS
  require_binaries
  if [ -s "$STATE/nodes" ] && [ -n "${LC_NODES:-}" ] && [ "$LC_NODES" != "$NODES" ]; then
    die "the cluster in $STATE runs $NODES nodes; LC_NODES=$LC_NODES needs 'cluster.sh down' first"
  fi
  mkdir -p "$STATE" "$LOGS" "$PIDS"
  echo "$NODES" >"$STATE/nodes"
  fence_up
  if [ -s "$STATE/kubeconfig" ] && all_healthy; then
    # Images rebuilt since the last `up` still go in (unchanged ones are skipped in milliseconds).
    [ "$NODES" = real ] && node_import_images
    say "local cluster is already up and healthy: nothing to do (kubeconfig: $STATE/kubeconfig)"
    return 0
  fi
  local c
  for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null || check_ports "$c"; done
  ADVERTISE_ADDRESS=$(advertise_address)
  ensure_pki
  if [ "$NODES" = real ]; then
    node_record_host
    node_pki
    node_write_configs
    node_network_up
  else
    write_kwok_stages
  fi
  ensure etcd && wait_healthy etcd 30
  ensure kube-apiserver && wait_healthy kube-apiserver 90
  say "kube-apiserver: ready after $((SECONDS - t0))s"
  if [ "$NODES" = real ]; then
    ensure containerd && wait_healthy containerd 30
    node_import_images
    for c in kube-controller-manager kube-scheduler; do ensure "$c"; done
    apply_manifest "$HERE/manifests/local-path.yaml"
    apply_manifest "$HERE/manifests/coredns.yaml"
    for c in kubelet kube-proxy local-path-provisioner; do ensure "$c"; done
  else
    for c in kube-controller-manager kube-scheduler kwok pv-provisioner; do ensure "$c"; done
    apply_manifest "$HERE/manifests/bootstrap.yaml"
  fi
  for c in "${COMPONENTS[@]}"; do wait_healthy "$c" 60; done
  local what="3 fake nodes" deadline=$((SECONDS + 90))
  [ "$NODES" = real ] && what="node $NODE_NAME and cluster DNS"
  say "waiting for the $what to become Ready ..."
  until nodes_ready; do
    for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null || { tail -n 25 "$LOGS/$c.log" >&2; die "$c died (log: $LOGS/$c.log)"; }; done
    if [ $SECONDS -ge $deadline ]; then
      kc get nodes -o wide >&2 || true
      kc -n kube-system get pods -o wide >&2 || true
      die "$what not Ready after 90s (logs: $LOGS/)"
    fi
    sleep 0.2
  done
  local prefix=""; [ "$KWOK_BESIDE_REAL" = 1 ] && prefix="LC_NODES=kwok "
  say "local cluster up in $((SECONDS - t0))s: $what Ready. Use it with: eval \"\$(${prefix}$HERE/cluster.sh env)\""
}

cmd_down() {
  local c pid stopped=0
  if [ "$NODES" = real ]; then
    # The kubelet first (it would restart what we stop), then every pod through the CRI while containerd runs.
    if pid=$(pid_of kubelet); then stop_pid "$pid" && say "kubelet: stopped (pid $pid)" && stopped=$((stopped + 1)); fi
    node_stop_pods
  fi
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c=${COMPONENTS[i]}
    if pid=$(pid_of "$c"); then stop_pid "$pid" && say "$c: stopped (pid $pid)" && stopped=$((stopped + 1)); fi
  done
  for pid in $(owned_pids); do
    warn "stopping straggler pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-100)"
    stop_pid "$pid"
  done
  if [ "$NODES" = real ]; then
    node_stop_pods
    node_unmount
    node_restore_host
    say "real node: host restored (iptables chains, bridge, sysctls, mounts, cgroups, /var and /run paths)"
  fi
  rm -rf "$STATE"
  fence_down
  say "local cluster down ($stopped components stopped; $STATE removed)"
}

cmd_status() {
  local c pid bad=0 h
  if [ ! -d "$STATE" ]; then echo "local cluster: not created ($STATE does not exist)"; return 1; fi
  printf '%-24s %-8s %-8s %s\n' COMPONENT PID STATE HEALTH
  for c in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$c"); then
      if healthy "$c"; then h=healthy; else h="NOT HEALTHY"; bad=1; fi
      printf '%-24s %-8s %-8s %s\n' "$c" "$pid" running "$h"
    else
      printf '%-24s %-8s %-8s %s\n' "$c" - "NOT RUNNING" "-"; bad=1
    fi
  done
  if healthy kube-apiserver; then
    local nodes
    nodes=$(kc get nodes -o jsonpath='{range .items[*]}{.metadata.name}{" Ready="}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>&1) || bad=1
    echo "nodes:"; while IFS= read -r line; do echo "  $line"; done <<<"${nodes:-(none)}"
    nodes_ready || bad=1
  else
    echo "nodes: unknown (kube-apiserver is not healthy)"
  fi
  [ $bad = 0 ] && echo "local cluster: healthy" || echo "local cluster: NOT healthy (run 'cluster.sh up' to restart what is down)"
  return $bad
}

cmd_env() {
  echo "export KUBECONFIG=$STATE/kubeconfig"
  echo "export PATH=$K8S_BIN:$(pinned_path)"
}

# One up/down at a time per state folder (fd 8 is closed in the components so they do not hold it).
mkdir -p "$CACHE"
lock() {
  exec 8>"$CACHE/localcluster-$(printf '%s' "$STATE" | md5sum | cut -c1-12).lock"
  flock -w 600 8 || die "another cluster.sh up/down on $STATE holds its lock for over 10 minutes"
}

case "${1:-}" in
  up) lock; cmd_up ;;
  down) lock; cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) die "usage: cluster.sh up|down|status|env" ;;
esac
