# The real node of the local cluster (sourced by cluster.sh after common.sh and pki.sh): containerd and runc
# from Debian's packages, a kubelet and kube-proxy from the same Kubernetes pin as the control plane, a bridge
# with no uplink, CoreDNS and the local-path provisioner. Facts behind every setting: README.md "Real node".
# shellcheck shell=bash

NODE_NAME=scaledapp-node
BRIDGE=cni-scaledapp0          # "cni" in the name: the before-stop check looks for it
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1             # the bridge's own address: the node's InternalIP, the apiserver's advertised one
SERVICE_CIDR=10.96.0.0/16
DNS_IP=10.96.0.10
NODE_DIR="$STATE/node"
# containerd's socket and runtime state live in /run (a unix socket path must stay short); one real node per
# machine, so one fixed folder. Its image store lives in the cache: images survive `down`, no re-import per `up`.
NODE_RUN=/run/scaledapp-node
CONTAINERD_SOCK="$NODE_RUN/containerd.sock"
CONTAINERD_ROOT="$CACHE/node/containerd"
HOST_RECORD="$CACHE/node/host-before.env"  # what the node changes on the host, recorded before it does
FW_CHAIN=SCALEDAPP-NODE
CRICTL="$(bin_dir crictl)/crictl"
# The kubelet's "kernel tunables" (it sets each that differs: pkg/kubelet/cm setupKernelTunables) and the bridge's.
NODE_SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables)
# Fixed paths the kubelet, CNI or runc create whatever their configuration says (removed by `down` when the
# node created them).
NODE_FIXED_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/netns /run/containerd)

ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }
crictl_() { "$CRICTL" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 10s "$@"; }

# node_require: the Debian packages and pinned binaries the real node runs; apt-get installs what is missing as root.
node_require() {
  local need=() b
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
  command -v iptables >/dev/null || need+=(iptables)
  command -v conntrack >/dev/null || need+=(conntrack)
  command -v socat >/dev/null || need+=(socat)  # kubectl port-forward goes through it
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "real node: installing Debian packages ${need[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } ||
        die "apt-get install ${need[*]} failed"
      service containerd stop >/dev/null 2>&1 || true  # Debian starts its own; the node runs ours
    else
      die "the real node needs Debian packages ${need[*]} (as root: apt-get install ${need[*]}); or use LC_NODES=kwok"
    fi
  fi
  [ "$(id -u)" = 0 ] || die "the real node runs containers: run as root (or use LC_NODES=kwok for fake nodes)"
  for b in "$K8S_BIN/kubelet" "$K8S_BIN/kube-proxy" "$CRICTL" "$(bin_dir local-path-provisioner)/local-path-provisioner"; do
    [ -x "$b" ] || die "missing $b: run 'make tools' (hack/localcluster/build.sh)"
  done
}

# ---------------------------------------------------------------- host changes, recorded and undone

node_record_host() {
  [ -s "$HOST_RECORD" ] && return 0  # a record from a run that did not finish `down` is the true original
  mkdir -p "$(dirname "$HOST_RECORD")"
  local s p
  {
    for s in "${NODE_SYSCTLS[@]}"; do echo "sysctl $s $(sysctl -n "$s" 2>/dev/null || echo -)"; done
    for p in "${NODE_FIXED_PATHS[@]}"; do [ -e "$p" ] && echo "existed $p"; done
    mountpoint -q /run/netns 2>/dev/null && echo "mounted /run/netns"
  } >"$HOST_RECORD.tmp"
  mv "$HOST_RECORD.tmp" "$HOST_RECORD"
}

# node_network_up: the bridge with the node's address, and the guard rules that keep pod traffic on this machine.
node_network_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$NODE_IP/24" dev "$BRIDGE"
  # /run/netns as a shared bind mount of itself before the first pod, as `ip netns add` makes it: done by any
  # tool later, while pods run, that would duplicate every pod's network-namespace mount, and containerd could
  # no longer remove them (pods stuck Terminating, seen once).
  mkdir -p /run/netns
  if ! mountpoint -q /run/netns; then mount --bind /run/netns /run/netns && mount --make-shared /run/netns; fi
  ip link set "$BRIDGE" up
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  # Our chain first in INPUT and FORWARD. Forwarded pod traffic may only go back into the bridge (pod to pod,
  # pod to Service after kube-proxy's DNAT): anything that would leave by another interface is dropped, and
  # there is no masquerade. The node's ports (apiserver, kubelet) answer only on loopback and the bridge.
  iptables -N "$FW_CHAIN-FWD" 2>/dev/null || iptables -F "$FW_CHAIN-FWD"
  iptables -A "$FW_CHAIN-FWD" -s "$POD_CIDR" ! -o "$BRIDGE" -j DROP -m comment --comment "pod traffic stays on the bridge"
  iptables -A "$FW_CHAIN-FWD" -d "$POD_CIDR" ! -i "$BRIDGE" -j DROP -m comment --comment "nothing from outside reaches pods"
  iptables -C FORWARD -j "$FW_CHAIN-FWD" 2>/dev/null || iptables -I FORWARD 1 -j "$FW_CHAIN-FWD"
  iptables -N "$FW_CHAIN-IN" 2>/dev/null || iptables -F "$FW_CHAIN-IN"
  iptables -A "$FW_CHAIN-IN" -i lo -j RETURN
  iptables -A "$FW_CHAIN-IN" -i "$BRIDGE" -j RETURN
  iptables -A "$FW_CHAIN-IN" -d "$NODE_IP" -j DROP -m comment --comment "the node address is for pods only"
  iptables -A "$FW_CHAIN-IN" -p tcp --dport "$APISERVER_PORT" -j DROP -m comment --comment "apiserver: loopback and pods"
  iptables -C INPUT -j "$FW_CHAIN-IN" 2>/dev/null || iptables -I INPUT 1 -j "$FW_CHAIN-IN"
}

# node_restore_host: undo every host change the node made (after its processes are gone).
node_restore_host() {
  local t c ipt
  # kube-proxy's own cleanup, then the kubelet's chains and ours (kube-proxy --cleanup leaves the kubelet's).
  [ -x "$K8S_BIN/kube-proxy" ] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  local rules chains rule
  # Both families: the kubelet makes its chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) in
  # ip6tables too whenever the host has IPv6.
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in filter nat mangle; do
      # Jumps from the built-in chains into ours, then our chains themselves (flushed first, as -X needs).
      rules=$($ipt -t "$t" -S 2>/dev/null | grep -E -- "^-A (INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) .*-j (KUBE-|CNI-|$FW_CHAIN)" || true)
      while read -r rule; do
        [ -n "$rule" ] && { eval "$ipt -t $t ${rule/#-A/-D}" 2>/dev/null || true; }
      done <<<"$rules"
      chains=$($ipt -t "$t" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-|'"$FW_CHAIN"')/ {print $2}' || true)
      for c in $chains; do $ipt -t "$t" -F "$c" 2>/dev/null || true; done
      for c in $chains; do $ipt -t "$t" -X "$c" 2>/dev/null || true; done
    done
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE"; fi
  # veth ends the CNI left behind (their pods' network namespaces are gone, so the peers are too).
  conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
  if [ -s "$HOST_RECORD" ]; then
    local kind key value
    while read -r kind key value; do
      case "$kind" in
        sysctl) [ "$value" = - ] || sysctl -qw "$key=$value" 2>/dev/null || warn "could not restore $key=$value" ;;
      esac
    done <"$HOST_RECORD"
    local p
    for p in "${NODE_FIXED_PATHS[@]}"; do
      grep -qxF "existed $p" "$HOST_RECORD" || rm -rf "$p"
    done
    rm -f "$HOST_RECORD"
  fi
  node_remove_cgroups
  rm -rf "$NODE_RUN"
}

# node_unmount: every mount under the node's folders (pod volumes, container root filesystems), deepest first.
node_unmount() {
  local m ours="^($NODE_DIR|$CONTAINERD_ROOT|$NODE_RUN|/run/netns/cni-[^/]*)(/|$)"
  # /run/netns itself only when `up` made it a mount point (another tool's `ip netns` may have, before us).
  grep -qxF "mounted /run/netns" "$HOST_RECORD" 2>/dev/null || ours="$ours|^/run/netns$"
  { awk '{print $2}' /proc/self/mounts | grep -E "$ours" || true; } |
    sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || warn "could not unmount $m"; done
}

# node_remove_cgroups: the kubepods hierarchy the kubelet made in every cgroup controller, leaves first.
node_remove_cgroups() {
  local root
  for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$root" ] || continue
    find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "$root" ] && warn "cgroup $root still has members"
  done
  return 0
}

# node_stop_pods: every pod sandbox through the CRI (runs the CNI DEL, stops containers), then stray shims.
node_stop_pods() {
  if [ -S "$CONTAINERD_SOCK" ] && [ -x "$CRICTL" ]; then
    crictl_ rmp -fa >/dev/null 2>&1 || warn "crictl rmp -fa failed; stopping the shims directly"
  fi
  local d cmd
  for d in /proc/[0-9]*; do
    cmd=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) || continue
    [[ $cmd == *containerd-shim*"$CONTAINERD_SOCK"* ]] && kill -KILL "${d#/proc/}" 2>/dev/null
  done
  return 0
}

# ---------------------------------------------------------------- configuration files

node_pki() {
  [ -s "$PKI/node-done" ] && return 0
  local client="extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment"
  pki_sign kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
  pki_sign kubelet-serving "/CN=$NODE_NAME" \
    "subjectAltName=DNS:$NODE_NAME,IP:$NODE_IP\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment"
  pki_sign kube-proxy "/CN=system:kube-proxy" "$client"
  # The apiserver's client identity towards the kubelet (logs, exec, port-forward).
  pki_sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  pki_sign local-path-provisioner "/CN=system:local-path-provisioner" "$client"
  write_kubeconfig "$PKI/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet-client
  write_kubeconfig "$PKI/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  write_kubeconfig "$PKI/local-path-provisioner.kubeconfig" system:local-path-provisioner local-path-provisioner
  chmod 600 "$PKI"/*.key
  date -u +%FT%TZ >"$PKI/node-done"
}

node_write_configs() {
  mkdir -p "$NODE_DIR"/{cni,cni-ipam,kubelet,pod-logs,volume-plugins,volumes} "$NODE_RUN" "$CONTAINERD_ROOT"
  cat >"$NODE_DIR/containerd.toml" <<EOF
# Written by cluster.sh. containerd 1.6 (Debian); see hack/localcluster/README.md "Real node".
version = 2
root = "$CONTAINERD_ROOT"
state = "$NODE_RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/scaledapp/pause:1"
  # This machine's bounding set lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$NODE_RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni"
    max_conf_num = 1
EOF
  # No masquerade, no portmap: pods reach each other, Services and the node, and nothing else.
  cat >"$NODE_DIR/cni/10-scaledapp.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "scaledapp",
  "plugins": [{
    "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true, "mtu": 1400,
    "ipam": {"type": "host-local", "dataDir": "$NODE_DIR/cni-ipam",
             "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]], "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
EOF
  : >"$NODE_DIR/resolv.conf"  # pods with dnsPolicy Default get no resolver: no name leaves the cluster
  cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# No CAP_SYS_RESOURCE here (see containerd.toml): no OOM priority between QoS classes.
oomScoreAdj: 0
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $NODE_DIR/resolv.conf
podLogsDir: $NODE_DIR/pod-logs
volumePluginDir: $NODE_DIR/volume-plugins
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# Images are imported, never pulled: one the kubelet collected could not come back.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}
maxPods: 110
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusReportFrequency: 1m
EOF
  cat >"$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $PKI/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_IP/32]
# 0: leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, syncPeriod: 30s, minSyncPeriod: 1s}
EOF
  cat >"$NODE_DIR/local-path-config.json" <<EOF
{"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["$NODE_DIR/volumes"]}]}
EOF
}

# node_import_images: the images hack/images/build.sh made, into containerd's k8s.io namespace, skipping any whose
# archive was imported already (its digest is recorded beside the image store).
node_import_images() {
  local index="$CACHE/images/index.tsv" archive ref sum seen="$CONTAINERD_ROOT/imported.tsv" n=0
  [ -s "$index" ] || die "no images in $CACHE/images: run 'hack/images/build.sh' (make images-local)"
  touch "$seen"
  while IFS=$'\t' read -r archive ref; do
    [ -n "$archive" ] || continue
    [ -s "$archive" ] || die "image archive $archive is missing: run 'hack/images/build.sh'"
    sum=$(stat -c '%s-%Y' "$archive")
    if grep -qxF "$ref	$sum" "$seen" && ctr_ images check "name==$ref" 2>/dev/null | grep -q complete; then continue; fi
    # The archives name their image (annotation io.containerd.image.name), so import keeps that name.
    ctr_ images import "$archive" >/dev/null || die "ctr images import $archive failed"
    grep -vF "$ref	" "$seen" >"$seen.tmp" || true
    printf '%s\t%s\n' "$ref" "$sum" >>"$seen.tmp" && mv "$seen.tmp" "$seen"
    n=$((n + 1))
  done <"$index"
  say "images: $n imported, the rest already present ($(wc -l <"$index") in $index)"
}
