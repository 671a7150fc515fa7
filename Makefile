# vaultsync: `make dev` brings up a local control plane + OpenBao + the operator;
# `make test` runs every test. Both install what they need themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STATE := .dev
export PYTHONPATH := operator:.

.PHONY: dev down test lint unit integration e2e crds chart-readme cluster-binaries postgres clean bench bench-5000 bench-peers

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

cluster-binaries: $(VENV)/.installed
	$(PY) -m e2e.harness build
	$(PY) -m e2e.harness.helm

# PostgreSQL for the dynamic database credentials of the integration and e2e tests (the
# harness starts its own server: e2e/harness/postgres.py); installed only when missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || \
		(apt-get update && (apt-get install -y postgresql-15 || apt-get install -y postgresql))

crds: $(VENV)/.installed
	$(PY) -m vaultsync crds crds charts/vaultsync/crds
	$(PY) -m vaultsync.api.reference docs/reference.md

chart-readme: $(VENV)/.installed
	$(PY) -m e2e.harness.chartdoc

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check operator tests e2e
	$(VENV)/bin/ruff format --check operator tests e2e
	$(VENV)/bin/mypy
	cd operator && ../$(VENV)/bin/lint-imports ../pyproject.toml

unit: $(VENV)/.installed
	$(VENV)/bin/pytest tests/unit

integration: $(VENV)/.installed postgres
	$(VENV)/bin/pytest tests/integration

e2e: cluster-binaries postgres
	$(VENV)/bin/pytest e2e

test: lint cluster-binaries postgres
	$(VENV)/bin/pytest tests e2e

dev: cluster-binaries
	$(PY) -m e2e.harness.dev up --state-dir $(STATE)

bench: cluster-binaries postgres
	$(PY) -m e2e.harness.bench

# long, not part of `make bench`: 5000 VaultSecrets (floor, sync from start and from the first
# create, refresh window, 100 changes for the latency's tail, outage) into a file of its own
bench-5000: cluster-binaries
	$(PY) -m e2e.harness.bench --sizes 5000 --only sizes --changes 100 --out docs/benchmarks-5000.md

# optional, in neither `make test` nor `make bench`: External Secrets Operator v0.16.2 (built
# from the Go module proxy on first use, at the lowest CPU priority) beside the floor and
# vaultsync on one stack, --concurrent 1 and 16, into docs/benchmarks-peers.md
bench-peers: cluster-binaries
	nice -n 19 $(PY) -m e2e.harness.bench.peers.eso
	$(PY) -m e2e.harness.bench.peers

down: $(VENV)/.installed
	$(PY) -m e2e.harness.dev down --state-dir $(STATE)

clean: down
	rm -rf $(STATE)
