# classifier-service: `make serve` serves the default catalog, `make test` runs every test.
PORT ?= 3000
HOST ?= 127.0.0.1
export BENTOML_DO_NOT_TRACK ?= True
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# uv installs .venv from uv.lock: no resolution, parallel downloads, the exact versions the tests passed with.
# It is pinned and kept in .uv/, so every machine installs with the same uv whatever else is on it.
UV_VERSION := 0.13.9
UV := .uv/bin/uv
export UV_PYTHON_DOWNLOADS := never
# the runtime pins of the bento (bentofile.yaml), exported from uv.lock by `make lock`
EXPORT := $(UV) export -q --frozen --no-dev --no-emit-project --no-hashes --no-annotate --format requirements-txt

.DEFAULT_GOAL := help
.PHONY: help install lock upgrade system-deps serve catalog test lint fmt type build image test-image clean bench bench-container scorecard fuzz soak k8s

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv .uv && .uv/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# --compile-bytecode: every process of `make serve` reads compiled modules from the first start on, also where
# PYTHONDONTWRITEBYTECODE is set (as in many container images), instead of compiling scikit-learn, SciPy and pandas
# from source at each start.
$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync -q --frozen --all-extras --compile-bytecode --python python3 && touch $@

install: $(STAMP) ## create .venv from uv.lock: the project, its dev and bench tools, at the locked versions

lock: | $(UV) ## after editing pyproject.toml: add what it asks to uv.lock (keeping the other pins), export requirements.txt
	$(UV) lock -q && $(EXPORT) -o requirements.txt

upgrade: | $(UV) ## move every dependency in uv.lock to its newest allowed version, export requirements.txt
	$(UV) lock -q --upgrade && $(EXPORT) -o requirements.txt

system-deps: ## install the Debian packages the tests need (prometheus, postgresql, wrk, podman, runc, mmdebstrap), when missing
	scripts/install-system-deps.sh

catalog: $(STAMP) ## register the default catalog models that the store lacks
	$(PY) -m models ensure

serve: catalog ## serve the configured models on $(HOST):$(PORT)
	$(VENV)/bin/bentoml serve service.app:ClassifierService --host $(HOST) --port $(PORT)

test: system-deps lint type ## lint, type check, then run the whole test suite (the image's tests included: test-image)
	$(PY) -m pytest

test-image: system-deps $(STAMP) ## build the image and run it as deployed (tests/e2e/test_image.py; make test runs it too)
	$(PY) -m pytest tests/e2e/test_image.py

fuzz: system-deps $(STAMP) ## schemathesis, 20,000+ cases with the stateful links, against a served catalog (make test runs 2,000)
	FUZZ_MIN_CASES=20000 FUZZ_EXAMPLES_PER_OPERATION=3000 FUZZ_PHASES=examples,coverage,fuzzing,stateful \
		$(PY) -m pytest -p no:cacheprovider -s tests/e2e/test_fuzz.py

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

fmt: $(STAMP) ## format the code
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

type: $(STAMP) ## mypy, strict on service/
	$(VENV)/bin/mypy service models bench scripts

build: catalog ## build the bento, for BentoML's own tooling (the image is `make image`)
	$(VENV)/bin/bentoml build

image: catalog ## build the image classifier-service:latest and :<version> (podman or CONTAINER_ENGINE; BASE_IMAGE: docs/deploy.md)
	$(PY) -m scripts.image build

k8s: $(STAMP) ## regenerate deploy/k8s/base's ServiceMonitor, PrometheusRule and dashboard ConfigMap from deploy/
	$(PY) -m scripts.generate_k8s

bench: $(STAMP) ## benchmark the service vs its peers (each installed into .bench/peers/) and the raw model, write docs/benchmarks.md (BENCH_ARGS=--quick: 3 s points)
	bench/install-wrk.sh && $(PY) -m bench $(BENCH_ARGS)

bench-container: $(STAMP) ## build the image, then measure it against the same service outside it: docs/container.md (BENCH_CONTAINER_ARGS=--quick)
	bench/install-wrk.sh && $(MAKE) image && $(PY) -m bench.container $(BENCH_CONTAINER_ARGS)

scorecard: system-deps $(STAMP) ## a clean day and graded faults on one server against the shipped alerts (promtool; SCORECARD_ARGS=--quick for a smoke run), write docs/monitoring-quality.md
	$(PY) -m bench.scorecard $(SCORECARD_ARGS)

soak: system-deps $(STAMP) ## 30 min of clean mixed traffic, 2 workers, a real Prometheus: docs/soak.md (SOAK_ARGS=--minutes 3)
	$(PY) -m bench.soak $(SOAK_ARGS)

clean: ## remove the venv, the project's uv and the project-local BentoML store
	rm -rf $(VENV) .uv .bentoml
