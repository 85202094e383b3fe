# The README's two commands are `make local` (synthesize every region, then run
# the local sandbox) and `make test` (every quality gate). Both install what
# they need on a fresh machine: a Python venv and the pinned CDK CLI.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(CURDIR)/$(VENV)/bin/python
# The pinned CLI, started directly (npx would add an npm process to every synth).
CDK := $(CURDIR)/node_modules/.bin/cdk
CDK_OUT ?= cdk.out
# Extra CDK arguments, e.g. make synth CDK_ARGS="-c regions=us-east-1,eu-west-1"
CDK_ARGS ?=
SANDBOX_ARGS ?=
# Arguments of `python -m bench`, e.g. make bench BENCH_ARGS="--quick --json bench.json"
BENCH_ARGS ?=
PYTEST_ARGS ?=

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: setup checkov-setup synth local lint api-docs test test-fast bench clean destroy-stage

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt multiregion_chat/runtime/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# checkov in a venv of its own: its pins (boto3, pydantic, ...) would fight the
# project's. tests/infra/test_checkov.py runs it over every synthesized template.
CHECKOV_VENV ?= .venv-checkov
checkov-setup: $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

synth: setup
	$(CDK) synth --quiet -o $(CDK_OUT) $(CDK_ARGS)

local: synth
	$(PY) -m sandbox --cdk-out $(CDK_OUT) $(SANDBOX_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy app.py multiregion_chat sandbox bench tools

# docs/api/, the API reference, from the docstrings (tools/api_reference.py). It is committed
# so the docs link to it; tests/infra/test_api_reference.py (part of `make test`) regenerates
# it and fails when the committed copy differs, so run this after changing a docstring.
api-docs: setup
	$(PY) -m tools.api_reference --out docs/api

# pytest exits 5 when it collected nothing: for this project that means a
# broken suite (a bad marker or path), never a pass, so it is named and failed.
test: lint checkov-setup
	@$(PY) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

# Everything but the sandbox and browser tests: the quick loop while editing.
test-fast: setup
	$(PY) -m pytest -m "not e2e and not browser and not slow" $(PYTEST_ARGS)

# One table of medians (docs/performance.md); the large_room part synthesizes its
# own variant of the app into .bench/, the sandbox parts use $(CDK_OUT).
bench: synth
	$(PY) -m bench --cdk-out $(CDK_OUT) $(BENCH_ARGS)

# Destroy a stage other than prod (make destroy-stage STAGE=dev CDK_ARGS="-c regions=..."):
# the signing secret's replicas first, or its stack may end in DELETE_FAILED
# (Secrets Manager refuses to delete a primary secret that has replicas).
STAGE ?=
destroy-stage: setup
	@test -n "$(STAGE)" || { echo "usage: make destroy-stage STAGE=<stage>"; exit 2; }
	$(PY) -m tools.remove_secret_replicas --stage $(STAGE) $(CDK_ARGS)
	$(CDK) destroy --all -c stage=$(STAGE) $(CDK_ARGS)

clean:
	rm -rf $(CDK_OUT) .bench .pytest_cache .mypy_cache .ruff_cache
