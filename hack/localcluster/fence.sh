# The cluster's addresses never leave the machine (sourced by cluster.sh after common.sh and node.sh).
#
# Pod, Service and kwok node addresses are 10.x ranges this machine does not own: without a route of their own,
# a connection to one follows the default route off the machine. The operator connects to its Postgres pods by
# their IPs, and kwok's pods are not real, so every kwok cluster would send such connections out. A filter rule
# in OUTPUT refuses, at once, whatever is still addressed to these ranges after kube-proxy's DNAT and is not going
# into the real node's bridge. Several clusters may run at once: each holds the fence with a file under
# $FENCE_HOLDERS, and the last one down takes it away.
# shellcheck shell=bash

FENCE_CHAIN=SCALEDAPP-FENCE
FENCE_HOLDERS="$CACHE/fence-holders"
# The real node's pods (10.244.0.0/24, on the bridge) and kwok's (10.244.128.0/17) share one /16.
FENCED_RANGES=(10.244.0.0/16 10.96.0.0/16 10.240.0.0/16)

fence_holder() { echo "$FENCE_HOLDERS/$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)"; }

# fence_up: install (or refresh) the rules and hold them for this cluster.
fence_up() {
  if [ "$(id -u)" != 0 ]; then
    warn "not root: pod and Service addresses (${FENCED_RANGES[*]}) are not fenced in; connections to them follow your default route"
    return 0
  fi
  if ! command -v iptables >/dev/null; then
    command -v apt-get >/dev/null || die "the fence needs iptables (apt-get install iptables)"
    say "fence: installing Debian package iptables"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables >/dev/null 2>&1 ||
      { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables >/dev/null; } ||
      die "apt-get install iptables failed"
  fi
  mkdir -p "$FENCE_HOLDERS"
  echo "$STATE" >"$(fence_holder)"
  local range
  iptables -N "$FENCE_CHAIN" 2>/dev/null || iptables -F "$FENCE_CHAIN"
  # kube-proxy's DNAT (host to ClusterIP) sends the packet to a pod on the bridge, but OUTPUT still sees the
  # interface chosen for the ClusterIP (the default route): such packets were already routed by kube-proxy.
  iptables -A "$FENCE_CHAIN" -m conntrack --ctstate DNAT -j RETURN
  # The node's own address (the bridge's) is local: delivered through lo (the apiserver to the kubelet).
  iptables -A "$FENCE_CHAIN" -o lo -j RETURN
  for range in "${FENCED_RANGES[@]}"; do
    # A TCP reset: connect() fails at once (an ICMP error only ends it after a retransmission).
    iptables -A "$FENCE_CHAIN" -d "$range" ! -o "$BRIDGE" -p tcp -j REJECT --reject-with tcp-reset \
      -m comment --comment "cluster addresses stay on this machine"
    iptables -A "$FENCE_CHAIN" -d "$range" ! -o "$BRIDGE" -j REJECT --reject-with icmp-admin-prohibited \
      -m comment --comment "cluster addresses stay on this machine"
  done
  iptables -C OUTPUT -j "$FENCE_CHAIN" 2>/dev/null || iptables -I OUTPUT 1 -j "$FENCE_CHAIN"
}

# fence_down: let go of the fence; the last holder removes it.
fence_down() {
  [ "$(id -u)" = 0 ] && command -v iptables >/dev/null || return 0
  rm -f "$(fence_holder)"
  local holder
  for holder in "$FENCE_HOLDERS"/*; do  # clusters that died without `down` no longer hold it
    [ -f "$holder" ] && [ ! -d "$(cat "$holder")" ] && rm -f "$holder"
  done
  [ -n "$(ls -A "$FENCE_HOLDERS" 2>/dev/null)" ] && return 0
  while iptables -D OUTPUT -j "$FENCE_CHAIN" 2>/dev/null; do :; done
  iptables -F "$FENCE_CHAIN" 2>/dev/null || true
  iptables -X "$FENCE_CHAIN" 2>/dev/null || true
}
