# classifier-service: `make serve` serves the default catalog, `make test` runs every test.
PORT ?= 3000
HOST ?= 127.0.0.1
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK ?= True
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install system-deps serve catalog test lint fmt type build clean bench scorecard fuzz soak k8s

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -e '.[dev]' && touch $@

install: $(STAMP) ## create .venv and install the project with its dev tools

system-deps: ## install the Debian packages the tests need (prometheus, promtool, postgresql), when missing
	scripts/install-system-deps.sh

catalog: $(STAMP) ## register the default catalog models that the store lacks
	$(PY) -m models ensure

serve: catalog ## serve the configured models on $(HOST):$(PORT)
	$(VENV)/bin/bentoml serve service.app:ClassifierService --host $(HOST) --port $(PORT)

test: system-deps lint type ## lint, type check, then run the whole test suite
	$(PY) -m pytest

fuzz: system-deps $(STAMP) ## schemathesis, 20,000+ cases with the stateful links, against a served catalog (make test runs 2,000)
	FUZZ_MIN_CASES=20000 FUZZ_EXAMPLES_PER_OPERATION=3000 FUZZ_PHASES=examples,coverage,fuzzing,stateful \
		$(PY) -m pytest -p no:cacheprovider -s tests/e2e/test_fuzz.py

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

fmt: $(STAMP) ## format the code
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

type: $(STAMP) ## mypy, strict on service/
	$(VENV)/bin/mypy service models bench scripts

build: catalog ## build the bento (needs no Docker engine)
	$(VENV)/bin/bentoml build

k8s: $(STAMP) ## regenerate deploy/k8s/base's ServiceMonitor, PrometheusRule and dashboard ConfigMap from deploy/
	$(PY) -m scripts.generate_k8s

bench: $(STAMP) ## benchmark service vs FastAPI vs raw model, write docs/benchmarks.md (BENCH_ARGS=--quick: 3 s points)
	bench/install-wrk.sh && $(PY) -m pip install -q -e '.[bench]' && $(PY) -m bench $(BENCH_ARGS)

scorecard: system-deps $(STAMP) ## clean traffic and injected faults against the shipped alerts (promtool), write docs/monitoring-quality.md
	$(PY) -m bench.scorecard $(SCORECARD_ARGS)

soak: system-deps $(STAMP) ## 30 min of clean mixed traffic, 2 workers, a real Prometheus: docs/soak.md (SOAK_ARGS=--minutes 3)
	$(PY) -m bench.soak $(SOAK_ARGS)

clean: ## remove the venv and the project-local BentoML store
	rm -rf $(VENV) .bentoml
