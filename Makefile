# The front door. `make demo` works on a fresh machine with Python and PyPI; `make test` and `make cluster`
# also need Go >= 1.26 and the Go module proxy (or KUBEBUILDER_ASSETS with etcd and the Kubernetes binaries).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools/bin
# The servers `make tools` builds are found on PATH by the tests, the demo and the cluster.
export PATH := $(CURDIR)/$(TOOLS):$(PATH)

.PHONY: install tools loaders demo test lint typecheck unit bench clean cluster cluster-down

install: $(STAMP)

# Real servers built from their Go modules through our wrapper modules in tools/ (docs/decisions.md §15);
# each is rebuilt only when its wrapper changes. With KUBEBUILDER_ASSETS set, etcd and the Kubernetes
# binaries come from there instead.
ifeq ($(KUBEBUILDER_ASSETS),)
GO_TOOLS := $(TOOLS)/kube-apiserver $(TOOLS)/etcd
endif
GO_TOOLS += $(TOOLS)/minio $(TOOLS)/kserve-manager
tools: $(GO_TOOLS)

$(TOOLS)/kube-apiserver: tools/k8s/go.mod tools/k8s/go.sum tools/build
	tools/build k8s
$(TOOLS)/etcd: tools/etcd/go.mod tools/etcd/go.sum tools/build
	tools/build etcd
$(TOOLS)/minio: tools/minio/go.mod tools/minio/go.sum tools/build
	tools/build minio
$(TOOLS)/kserve-manager: tools/kserve/go.mod tools/kserve/go.sum tools/build
	tools/build kserve

# The real loaders (torch, transformers, peft, safetensors) for tests/loaders, in an environment of their
# own outside the checkout (several GB; reused by every clone on this machine until the pins change).
loaders:
	$(PYTHON) -m tests.loaders.env

$(STAMP): pyproject.toml setup.py src/modelpvc/core/_md5lanes.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

demo: install
	$(BIN)/modelpvc demo --workdir demo

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

test: lint typecheck tools loaders
	$(BIN)/python -m pytest -q

bench: install $(TOOLS)/minio
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m compileall -q src
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/verify_plan.py

# The seed's cluster on this machine (real control plane and KServe, process kubelet, MinIO), in the
# background until `make cluster-down`. Needs root. Kubeconfigs: .cluster/kubeconfig (admin) and
# .cluster/kubeconfig-project-admin.
cluster: install tools
	@test ! -e .cluster/pid || { echo "a cluster is running (.cluster/pid): make cluster-down first"; exit 1; }
	@mkdir -p .cluster
	@nohup $(BIN)/python -m tests.cluster up .cluster > .cluster/cluster.log 2>&1 & echo $$! > .cluster/pid
	@for i in $$(seq 1 120); do test -e .cluster/ready && break; \
	  kill -0 $$(cat .cluster/pid) 2>/dev/null || { cat .cluster/cluster.log; rm -f .cluster/pid; exit 1; }; sleep 0.5; done
	@test -e .cluster/ready || { echo "the cluster did not start: see .cluster/cluster.log"; exit 1; }
	@tail -1 .cluster/cluster.log
	@echo "export KUBECONFIG=$(CURDIR)/.cluster/kubeconfig-project-admin   # the project admin of private-ai-demo"
	@echo "MinIO for uploads from this machine: .cluster/minio.env; inside the cluster: http://minio.model-storage.svc:9000"

cluster-down:
	$(BIN)/python -m tests.cluster down .cluster

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache .tools
