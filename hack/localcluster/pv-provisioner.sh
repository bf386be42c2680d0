#!/usr/bin/env bash
# The external provisioner of the local cluster's default StorageClass `standard` (provisioner scaledapp.dev/local-pv).
#
# It follows the real external-provisioner contract, so the controller-manager's PV binder does the binding:
#   1. the PV binder sees a claim it cannot bind and annotates it volume.kubernetes.io/storage-provisioner=ours;
#   2. this loop creates a PersistentVolume of the claim's size and modes, pre-bound to it by claimRef;
#   3. the PV binder binds the claim to it (claim Bound, volume Bound);
#   4. when the claim is deleted the binder marks the volume Released and, since it was provisioned by an
#      external provisioner, leaves deletion to us: this loop deletes Released volumes it provisioned.
# Volumes are hostPath stubs that nothing mounts (kwok nodes run no containers).
# Usage: pv-provisioner.sh STATE_DIR   (started and stopped by cluster.sh; logs to STATE_DIR/logs/pv-provisioner.log)
set -euo pipefail
STATE=${1:?usage: pv-provisioner.sh STATE_DIR}
PROVISIONER=scaledapp.dev/local-pv
export KUBECONFIG="$STATE/kubeconfig"
KUBECTL=${KUBECTL:-kubectl}
# kubectl with the kubeconfig on its command line, so `cluster.sh down` recognises leftover watches as its own.
kc() { "$KUBECTL" --kubeconfig="$KUBECONFIG" "$@"; }

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# Stop the watch pipelines with us (we are the leader of our own process group: cluster.sh starts us with setsid).
trap 'trap - TERM INT EXIT; kill 0 2>/dev/null || true' TERM INT EXIT

# pv_json NS NAME UID SIZE MODES MODE CLASS: the PersistentVolume for one claim, pre-bound to it.
pv_json() {
  local ns=$1 name=$2 uid=$3 size=${4:-1Gi} modes=${5:-'["ReadWriteOnce"]'} mode=${6:-Filesystem} class=$7
  printf '%s' "{\"apiVersion\": \"v1\", \"kind\": \"PersistentVolume\",
 \"metadata\": {\"name\": \"pvc-$uid\", \"labels\": {\"scaledapp.dev/local-pv\": \"true\"},
              \"annotations\": {\"pv.kubernetes.io/provisioned-by\": \"$PROVISIONER\"}},
 \"spec\": {\"capacity\": {\"storage\": \"$size\"}, \"accessModes\": $modes, \"volumeMode\": \"$mode\",
          \"persistentVolumeReclaimPolicy\": \"Delete\", \"storageClassName\": \"$class\",
          \"claimRef\": {\"apiVersion\": \"v1\", \"kind\": \"PersistentVolumeClaim\",
                       \"namespace\": \"$ns\", \"name\": \"$name\", \"uid\": \"$uid\"},
          \"hostPath\": {\"path\": \"/var/lib/scaledapp-local-pv/pvc-$uid\"}}}"
}

# provision_batch PV_JSON...: create the volumes with one kubectl call (a process per claim was the
# bottleneck when many StatefulSets start at once); a volume that already exists is not an error.
provision_batch() {
  local items out line
  items=$(IFS=,; printf '%s' "$*")
  out=$(kc create -f - 2>&1 <<<"{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [$items]}") || true
  while IFS= read -r line; do
    case $line in
      *" created") log "provisioned ${line#persistentvolume/}" ;;
      *AlreadyExists*|"") ;;
      *) log "ERROR provisioning: $line" ;;
    esac
  done <<<"$out"
}

CLAIM_TPL='{.metadata.namespace}|{.metadata.name}|{.metadata.uid}|{.status.phase}|{.spec.volumeName}|'
CLAIM_TPL+='{.metadata.annotations.volume\.kubernetes\.io/storage-provisioner}|{.spec.resources.requests.storage}|'
CLAIM_TPL+='{.spec.accessModes}|{.spec.volumeMode}|{.spec.storageClassName}|{.metadata.deletionTimestamp}{"\n"}'

# relist_claims: every RELIST_SECONDS, every claim there is, listed item by item. `kubectl get --watch -o
# jsonpath` prints its initial list as one List object, with every field empty: after a watch ended (the
# API server ends them every few minutes), the claims made meanwhile were never seen again (at 200 and 500
# ScaledApps, a few dozen StatefulSets never ready). A claim already provisioned gives AlreadyExists.
relist_claims() {
  local line ns name uid phase vol prov size modes mode class deleting batch
  while true; do
    sleep "${RELIST_SECONDS:-15}"
    batch=()
    while IFS= read -r line; do
      IFS='|' read -r ns name uid phase vol prov size modes mode class deleting <<<"$line"
      if [ -n "$uid" ] && [ "$phase" = Pending ] && [ -z "$vol" ] && [ "$prov" = "$PROVISIONER" ] && [ -z "$deleting" ]; then
        batch+=("$(pv_json "$ns" "$name" "$uid" "$size" "$modes" "$mode" "$class")")
      fi
    done < <(kc get pvc --all-namespaces -o jsonpath="{range .items[*]}$CLAIM_TPL{end}" 2>/dev/null || true)
    [ ${#batch[@]} -eq 0 ] || provision_batch "${batch[@]}"
  done
}

# watch_claims: every claim the PV binder handed to us and that has no volume yet gets one. Claims that
# arrive together (a watch delivers them back to back) are provisioned in one batch.
watch_claims() {
  local tpl=$CLAIM_TPL
  while true; do
    kc get pvc --all-namespaces --watch -o jsonpath="$tpl" 2>&1 | {
      batch=() partial=''
      while true; do
        # kubectl's jsonpath printer writes a line in pieces: a read that times out mid-line keeps what it got
        # (it was dropped, and the claim with it: never provisioned, its StatefulSet never ready).
        if IFS= read -r -t 0.2 chunk; then
          line=$partial$chunk partial=''
          IFS='|' read -r ns name uid phase vol prov size modes mode class deleting <<<"$line"
          [ -n "$uid" ] || { log "claim watch: $ns"; continue; }
          if [ "$phase" = Pending ] && [ -z "$vol" ] && [ "$prov" = "$PROVISIONER" ] && [ -z "$deleting" ]; then
            batch+=("$(pv_json "$ns" "$name" "$uid" "$size" "$modes" "$mode" "$class")")
          fi
          [ ${#batch[@]} -lt 100 ] || { provision_batch "${batch[@]}"; batch=(); }
        else
          rc=$?  # above 128: no whole line for 0.2 s, so flush the batch; otherwise the watch ended
          partial+=$chunk
          [ ${#batch[@]} -eq 0 ] || { provision_batch "${batch[@]}"; batch=(); }
          [ "$rc" -gt 128 ] || break
        fi
      done
    } || true
    log "claim watch ended; re-listing"
    sleep 1
  done
}

# watch_volumes: Released volumes we provisioned are deleted (reclaim policy Delete, done by the provisioner).
watch_volumes() {
  local tpl='{.metadata.name}|{.status.phase}|{.metadata.annotations.pv\.kubernetes\.io/provisioned-by}|'
  tpl+='{.metadata.deletionTimestamp}{"\n"}'
  while true; do
    kc get pv --watch -o jsonpath="$tpl" 2>&1 |
      while IFS='|' read -r name phase prov deleting; do
        if [ "$phase" = Released ] && [ "$prov" = "$PROVISIONER" ] && [ -z "$deleting" ]; then
          if kc delete pv "$name" --wait=false --ignore-not-found >/dev/null 2>&1; then
            log "deleted released volume $name"
          else
            log "ERROR deleting released volume $name"
          fi
        fi
      done || true
    log "volume watch ended; re-listing"
    sleep 1
  done
}

log "pv-provisioner: serving claims for provisioner $PROVISIONER (kubeconfig $KUBECONFIG)"
watch_claims &
relist_claims &
watch_volumes &
wait
