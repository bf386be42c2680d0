#!/usr/bin/env bash
# The kind path (README "Quickstart on kind"): kind.sh up|images|load-images|deploy|load|chaos|down
#
# Every step checks what it needs first and names what is missing (exit 2), prints each command it runs
# ("+ ..."), and passes an explicit --context kind-$KIND_CLUSTER / --kube-context, so it never acts on
# whatever cluster your current kubectl context points at.
#
# CLUSTER=minikube runs the same steps on minikube (profile $MINIKUBE_PROFILE, default scaledapp, whose kubectl
# context has the profile's name): `up` starts it with the pinned Kubernetes, `load-images` uses
# `minikube image load`, `down` deletes the profile.
# CLUSTER=local runs deploy, load and chaos - the same commands - against the local cluster's real node
# instead (hack/localcluster, `make cluster-up`): context scaledapp-local, with the kubeconfig and the pinned
# kubectl and helm that `hack/localcluster/cluster.sh env` names; its images are imported by `cluster-up`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KIND_CLUSTER=${KIND_CLUSTER:-scaledapp}
CLUSTER=${CLUSTER:-kind}
case "$CLUSTER" in
  kind) CONTEXT="kind-${KIND_CLUSTER}" ;;
  minikube) MINIKUBE_PROFILE=${MINIKUBE_PROFILE:-scaledapp}; CONTEXT="$MINIKUBE_PROFILE" ;;
  local)
    CONTEXT=scaledapp-local
    # KUBECONFIG of the local cluster and the pinned binaries first on PATH.
    eval "$("$ROOT/hack/localcluster/cluster.sh" env)"
    export KUBECONFIG ;;
  *) echo "CLUSTER must be kind, minikube or local, not '$CLUSTER'" >&2; exit 64 ;;
esac
KIND_VERSION_WANT=v0.33.0           # the release whose node image hack/kind/cluster.yaml pins by digest
OPERATOR_IMAGE=${OPERATOR_IMAGE:-ghcr.io/scaledapp/operator:0.1.0}   # the chart's image.repository:appVersion
DEMO_IMAGE=${DEMO_IMAGE:-ghcr.io/scaledapp/demo-app:0.1.0}           # the CRD's default spec.app.image
RELEASE=scaledapp
SYSTEM_NS=scaledapp-system          # the CRD's default prometheusUrl is http://prometheus.scaledapp-system.svc:9090
DEMO_NS=${DEMO_NS:-demo}
DEMO_NAME=demo                      # metadata.name in examples/minimal.yaml
LOAD_PROFILE=${LOAD_PROFILE:-step:rate=20,peak=150,at=60}
LOAD_SECONDS=${LOAD_SECONDS:-300}
BIN="${SCALEDAPP_BIN:-$HOME/.cache/scaledapp/bin}"
# shellcheck disable=SC1091
source "$ROOT/hack/localcluster/versions.env"

say() { printf '==> %s\n' "$*" >&2; }
run() { printf '+ %s\n' "$*" >&2; "$@"; }

# The pinned kubectl and helm when `make tools` built them, else whatever is on PATH.
KUBECTL=kubectl; [ -x "$BIN/kubernetes-v$K8S_VERSION/kubectl" ] && KUBECTL="$BIN/kubernetes-v$K8S_VERSION/kubectl"
HELM=helm; [ -x "$BIN/helm-v$HELM_VERSION/helm" ] && HELM="$BIN/helm-v$HELM_VERSION/helm"
PY=python3; [ -x "$ROOT/.venv/bin/python" ] && PY="$ROOT/.venv/bin/python"

missing=()
need() { # need CMD HINT
  command -v "$1" >/dev/null 2>&1 || missing+=("$1: $2")
}
need_engine() {
  need docker "install Docker (https://docs.docker.com/get-docker/)"
  if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
    missing+=("a running Docker engine: \`docker info\` failed (start Docker Desktop or dockerd)")
  fi
}
need_kind() {
  need kind "install kind $KIND_VERSION_WANT (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
}
need_cluster() {
  if command -v kind >/dev/null 2>&1 && ! kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    missing+=("the kind cluster \"$KIND_CLUSTER\": run \`make kind-up\`")
  fi
}
need_local() {
  if ! "$ROOT/hack/localcluster/cluster.sh" status >/dev/null 2>&1; then
    missing+=("the local cluster with its real node: run \`make cluster-up\` (\`make cluster-status\` says what is down)")
  fi
}
need_minikube() {
  need minikube "install minikube (https://minikube.sigs.k8s.io/docs/start/)"
}
need_minikube_profile() {
  if command -v minikube >/dev/null 2>&1 && ! minikube -p "$MINIKUBE_PROFILE" status >/dev/null 2>&1; then
    missing+=("the minikube profile \"$MINIKUBE_PROFILE\" running: run \`make minikube-up\`")
  fi
}
need_target() { # the cluster deploy, load and chaos act on
  case "$CLUSTER" in
    local) need_local ;;
    minikube) need_minikube; need_minikube_profile ;;
    *) need_kind; need_cluster ;;
  esac
}
kind_only() { # kind_only STEP: up, load-images and down exist for kind and minikube, not for the local cluster
  [ "$CLUSTER" != local ] || { echo "kind.sh $1 is for kind or minikube; the local cluster: make cluster-up" >&2; exit 64; }
}
check() { # check WHAT: fail with every missing prerequisite at once
  if [ ${#missing[@]} -gt 0 ]; then
    printf '%s needs:\n' "$1" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 2
  fi
}

k() { run "$KUBECTL" --context "$CONTEXT" "$@"; }

cmd_minikube_up() {
  need_minikube; check "make minikube-up"
  if minikube -p "$MINIKUBE_PROFILE" status >/dev/null 2>&1; then
    say "minikube profile $MINIKUBE_PROFILE already runs (context $CONTEXT): nothing to do"
  else
    say "starting minikube profile $MINIKUBE_PROFILE: Kubernetes v$K8S_VERSION, 4 CPUs, 8 GiB (MINIKUBE_DRIVER=${MINIKUBE_DRIVER:-docker})"
    run minikube start -p "$MINIKUBE_PROFILE" --kubernetes-version="v$K8S_VERSION" --cpus=4 --memory=8g \
      --driver="${MINIKUBE_DRIVER:-docker}"
  fi
  say "next: make images minikube-load deploy CLUSTER=minikube"
}

cmd_up() {
  [ "$CLUSTER" = minikube ] && { cmd_minikube_up; return; }
  need_engine; need_kind; check "make kind-up"
  local have; have=$(kind version 2>/dev/null | awk '{print $2}')
  [ "$have" = "$KIND_VERSION_WANT" ] || say "kind $have found; the pinned node image is built for kind $KIND_VERSION_WANT"
  if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    say "kind cluster $KIND_CLUSTER already exists (context $CONTEXT): nothing to do"
  else
    say "creating kind cluster $KIND_CLUSTER: 1 control plane + 2 workers, Kubernetes 1.34 (hack/kind/cluster.yaml)"
    run kind create cluster --name "$KIND_CLUSTER" --config "$ROOT/hack/kind/cluster.yaml" --wait 180s
  fi
  say "next: make images kind-load deploy"
}

cmd_images() {
  need_engine; check "make images"
  say "building $OPERATOR_IMAGE (operator/Dockerfile, context: the repository root)"
  run docker build -f "$ROOT/operator/Dockerfile" -t "$OPERATOR_IMAGE" "$ROOT"
  say "building $DEMO_IMAGE (demo-app/Dockerfile, context: the repository root: the app, its worker and the load generator)"
  run docker build -f "$ROOT/demo-app/Dockerfile" -t "$DEMO_IMAGE" "$ROOT"
  run docker image ls --filter "reference=ghcr.io/scaledapp/*"
}

cmd_load_images() {
  if [ "$CLUSTER" = minikube ]; then
    need_engine; need_minikube; need_minikube_profile; check "make minikube-load"
    for image in "$OPERATOR_IMAGE" "$DEMO_IMAGE"; do
      docker image inspect "$image" >/dev/null 2>&1 || missing+=("the image $image: run \`make images\`")
    done
    check "make minikube-load"
    say "loading the images into minikube profile $MINIKUBE_PROFILE with its own command (no registry)"
    for image in "$OPERATOR_IMAGE" "$DEMO_IMAGE"; do run minikube -p "$MINIKUBE_PROFILE" image load "$image"; done
    return
  fi
  need_engine; need_kind; need_cluster; check "make kind-load"
  for image in "$OPERATOR_IMAGE" "$DEMO_IMAGE"; do
    docker image inspect "$image" >/dev/null 2>&1 || missing+=("the image $image: run \`make images\`")
  done
  check "make kind-load"
  say "loading the images into every node of $KIND_CLUSTER (no registry needed; pods use IfNotPresent)"
  run kind load docker-image --name "$KIND_CLUSTER" "$OPERATOR_IMAGE" "$DEMO_IMAGE"
}

cmd_deploy() {
  need_target; need "$KUBECTL" "kubectl (or \`make tools\`)"; need "$HELM" "helm v3 (or \`make tools\`)"
  check "make deploy"
  say "the CRD first (helm installs crds/ only once and never upgrades them)"
  k apply --server-side --force-conflicts -f "$ROOT/crds/"
  say "the operator and the bundled Prometheus: helm release $RELEASE in $SYSTEM_NS"
  run "$HELM" upgrade --install "$RELEASE" "$ROOT/charts/scaledapp-operator" --kube-context "$CONTEXT" \
    --namespace "$SYSTEM_NS" --create-namespace --set prometheus.enabled=true --wait --timeout 5m
  say "an example ScaledApp: examples/minimal.yaml in namespace $DEMO_NS"
  "$KUBECTL" --context "$CONTEXT" get namespace "$DEMO_NS" >/dev/null 2>&1 || k create namespace "$DEMO_NS"
  k apply -n "$DEMO_NS" -f "$ROOT/examples/minimal.yaml"
  if [ "$CLUSTER" = local ]; then
    say "waiting for every tier to be Ready (the node has the images: well under a minute)"
  else
    say "waiting for every tier to be Ready (first run pulls Redis, Postgres and the exporters: a few minutes)"
  fi
  k wait -n "$DEMO_NS" --for=condition=Ready "scaledapp/$DEMO_NAME" --timeout=15m
  k get -n "$DEMO_NS" scaledapp "$DEMO_NAME"
  say "next: make load   (and in another terminal: kubectl --context $CONTEXT -n $DEMO_NS get scaledapp -w)"
}

kubectl_dir() { # the scripts run `kubectl`: the one chosen above (the pinned build when there is one) first
  if [ "$KUBECTL" = kubectl ]; then dirname "$(command -v kubectl || echo /usr/bin/kubectl)"; else dirname "$KUBECTL"; fi
}

need_python() {
  need "$KUBECTL" "kubectl (or \`make tools\`)"; need "$PY" "python3 (or \`make venv\`)"; need_target
}

cmd_load() {
  need_python; check "make load"
  say "load generator as a Job in $DEMO_NS against svc/$DEMO_NAME-app: $LOAD_PROFILE for ${LOAD_SECONDS}s"
  # python -m from the repository root: hack is a package there (scaledapp and demo_app are installed).
  cd "$ROOT"
  PATH="$(kubectl_dir):$PATH" run "$PY" -m hack.loadjob --context "$CONTEXT" --namespace "$DEMO_NS" --name "$DEMO_NAME" \
    --profile "$LOAD_PROFILE" --seconds "$LOAD_SECONDS" --image "$DEMO_IMAGE"
}

cmd_chaos() {
  need_python; check "make chaos"
  say "chaos drill: one pod of each tier deleted under load; report at the end"
  local extra=()
  read -r -a extra <<< "${CHAOS_ARGS:-}"  # e.g. CHAOS_ARGS="--tiers app,db-write --seconds 60"
  # python -m from the repository root: hack is a package there (scaledapp and demo_app are installed).
  cd "$ROOT"
  PATH="$(kubectl_dir):$PATH" run "$PY" -m hack.chaos --context "$CONTEXT" --namespace "$DEMO_NS" --name "$DEMO_NAME" \
    --image "$DEMO_IMAGE" "${extra[@]}"
}

cmd_down() {
  if [ "$CLUSTER" = minikube ]; then
    need_minikube; check "make minikube-down"
    run minikube delete -p "$MINIKUBE_PROFILE"
    return
  fi
  need_kind; check "make kind-down"
  if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    run kind delete cluster --name "$KIND_CLUSTER"
  else
    say "no kind cluster $KIND_CLUSTER: nothing to do"
  fi
}

case "${1:-}" in
  up) kind_only up; cmd_up ;;
  images) kind_only images; cmd_images ;;
  load-images) kind_only load-images; cmd_load_images ;;
  deploy) cmd_deploy ;;
  load) cmd_load ;;
  chaos) cmd_chaos ;;
  down) kind_only down; cmd_down ;;
  *) echo "usage: $0 up|images|load-images|deploy|load|chaos|down" >&2; exit 64 ;;
esac
