# ScaledApp — the two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
LC := hack/localcluster
# No PYTHONPATH: `make venv` installs this repository (operator, demo app, plugin) editable into .venv;
# tests, devharness, hack and bench run from the repository root (pytest's pythonpath, python -m).

.PHONY: minikube-up minikube-load minikube-down
.PHONY: help venv deps tools node-images lint typecheck unit test demo bench crds cluster-up cluster-down cluster-status \
        kind-up images kind-load deploy load chaos kind-down

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(VENV)/.stamp: requirements/runtime.txt requirements/dev.txt requirements/build.txt demo-app/requirements.txt pyproject.toml
	@echo "==> Python packages: creating $(VENV), installing requirements/dev.txt and this repository (editable)"
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@$(VPY) -m pip install -q --upgrade pip
	@$(VPY) -m pip install -q -r requirements/dev.txt
	@$(VPY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

venv: $(VENV)/.stamp ## Python virtualenv with every pinned package

deps: ## Debian packages (redis-server, postgresql, haproxy, openssl) via apt-get when root
	@hack/deps.sh

tools: ## build the pinned Go binaries (k8s, etcd, kwok, helm, prometheus, exporters) into ~/.cache/scaledapp
	@$(LC)/build.sh

lint: venv ## ruff + mypy + import contracts (.importlinter)
	@echo "==> ruff"; $(VENV)/bin/ruff check operator demo-app tests bench hack devharness
	@echo "==> ruff: no module imports another's private names"
	@$(VENV)/bin/ruff check --preview --select PLC2701 operator demo-app tests bench hack devharness
	@echo "==> mypy"; $(VENV)/bin/mypy
	@echo "==> import contracts (.importlinter)"; $(VENV)/bin/lint-imports --no-logo --no-cache

crds: venv ## regenerate crds/ and the chart's crds/ from the pydantic API
	@$(VPY) -m scaledapp.crdgen --write

unit: venv ## the pure-code tests only (no servers)
	@$(VPY) -m pytest -m "not cluster and not dataplane and not realnode" -q

test: venv deps tools node-images lint ## everything: lint, unit, control plane (kwok), real node, data plane, end to end
	@echo "==> pytest (cluster tests start the local control plane once; see .localcluster/logs)"
	@$(VPY) -m pytest -q -p no:cacheprovider --timeout=900

bench: venv ## ScaledApp vs HPA-style baselines on the simulated twin (+ control-plane and data-plane benches) -> bench/results/
	@echo "==> twin benchmark in simulated time, then the control-plane and data-plane benchmarks"
	@$(VPY) bench/run.py --out bench/results

node-images: tools ## the real node's images, built without a registry (hack/images/build.sh; cached)
	@hack/images/build.sh

cluster-up: tools ## control plane + the real node (LC_NODES=kwok: 3 fake nodes instead, in .localcluster-kwok/)
	@if [ "$${LC_NODES:-real}" != kwok ]; then hack/images/build.sh; fi
	@$(LC)/cluster.sh up

cluster-down: ## stop the local clusters (the real node's and the kwok one beside it), undo host changes, remove state
	@$(LC)/cluster.sh down
	@if [ -d .localcluster-kwok ]; then LC_NODES=kwok $(LC)/cluster.sh down; fi

cluster-status: ## say which local-cluster components run
	@$(LC)/cluster.sh status

# ---------------------------------------------------------------------------------------------- demo
# Default: the real data plane on the local real node (devharness/demo/real.py). TWIN=1: the simulated twin on
# a kwok cluster beside it (python -m devharness.demo). KIND=1: the kind path below.
DURATION ?= 420
PROFILE ?= bottleneck-shift
demo: venv ## the closed loop live on the real node; report + plot; DURATION=s PROFILE=p; TWIN=1: twin; KIND=1: kind
	@if [ "$(KIND)" = 1 ]; then \
		echo "==> KIND=1: the real path (kind cluster, images, operator and Prometheus, load generator)"; \
		$(MAKE) --no-print-directory kind-up deploy load CLUSTER=kind; \
	elif [ "$(TWIN)" = 1 ]; then \
		echo "==> TWIN=1: the simulated twin of the data plane on a kwok cluster"; \
		LC_NODES=kwok $(MAKE) --no-print-directory cluster-up && \
		LC_NODES=kwok $(VPY) -m devharness.demo --duration $(DURATION) --profile $(PROFILE); \
	else \
		$(MAKE) --no-print-directory cluster-up && \
		$(VPY) -m devharness.demo.real --duration $(DURATION) --profile $(PROFILE); \
	fi

# ---------------------------------------------------------------------------------------------- kind
# The real path on your machine, with Docker and kind (README "Quickstart on kind"). Each target checks its
# prerequisites, names what is missing, and prints every command it runs (hack/kind/kind.sh); all of them
# use the kubectl context kind-$(KIND_CLUSTER) explicitly, never your current one.
# deploy, load and chaos act on CLUSTER: local (the default: the local real node after `make cluster-up`,
# context scaledapp-local) or kind (context kind-$(KIND_CLUSTER)); DEMO_NS is the namespace they use.
CLUSTER ?= local
KIND_CLUSTER ?= scaledapp
DEMO_NS ?= demo
LOAD_PROFILE ?= step:rate=20,peak=150,at=60
LOAD_SECONDS ?= 300
KIND_SH := KIND_CLUSTER=$(KIND_CLUSTER) hack/kind/kind.sh
TARGET_SH := CLUSTER=$(CLUSTER) KIND_CLUSTER=$(KIND_CLUSTER) DEMO_NS='$(DEMO_NS)' hack/kind/kind.sh

kind-up: ## create the kind cluster (1 control plane + 2 workers, pinned Kubernetes 1.34 node image)
	@$(KIND_SH) up

images: ## docker build the operator and demo-app images under the tags the chart and the CRD default to
	@$(KIND_SH) images

kind-load: images ## load both images into the kind nodes (no registry)
	@$(KIND_SH) load-images

deploy: $(if $(filter kind,$(CLUSTER)),kind-load,$(if $(filter minikube,$(CLUSTER)),minikube-load,cluster-up)) ## CRD, chart + Prometheus, examples/minimal.yaml in DEMO_NS; CLUSTER=local|kind|minikube
	@$(TARGET_SH) deploy

load: ## load generator Job against the app's Service; LOAD_PROFILE=..., LOAD_SECONDS=...; CLUSTER=local|kind|minikube
	@LOAD_PROFILE='$(LOAD_PROFILE)' LOAD_SECONDS='$(LOAD_SECONDS)' $(TARGET_SH) load

chaos: ## delete a pod of each tier under load; report (hack/chaos.py); CHAOS_ARGS='--tiers app'; CLUSTER=local|kind|minikube
	@CHAOS_ARGS='$(CHAOS_ARGS)' $(TARGET_SH) chaos

kind-down: ## delete the kind cluster
	@$(KIND_SH) down

# minikube: the same targets with CLUSTER=minikube (profile MINIKUBE_PROFILE, default scaledapp = its context).
MINIKUBE_SH := CLUSTER=minikube MINIKUBE_PROFILE=$(or $(MINIKUBE_PROFILE),scaledapp) hack/kind/kind.sh

minikube-up: ## start minikube (profile scaledapp, the pinned Kubernetes, 4 CPUs, 8 GiB)
	@$(MINIKUBE_SH) up

minikube-load: images ## load both images into minikube with `minikube image load` (no registry)
	@$(MINIKUBE_SH) load-images

minikube-down: ## delete the minikube profile
	@$(MINIKUBE_SH) down

.PHONY: reference
reference: venv ## regenerate docs/reference.md (the ScaledApp API reference) from the CRD descriptions
	@$(VPY) -m hack.gen_reference --write

.PHONY: chart-readme
chart-readme: venv ## regenerate charts/scaledapp-operator/README.md (every value) from Chart.yaml and values.yaml
	@$(VPY) -m hack.gen_chart_readme --write
