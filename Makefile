# The two commands a fresh machine needs: `make demo` and `make test`.
# Both create .venv/ (and node_modules/ for the CDK CLI) on first run.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_BUILD_CONSTRAINT := $(CURDIR)/requirements/build-constraints.txt
export PIP_CONSTRAINT := $(CURDIR)/requirements/build-constraints.txt
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 18,20

.PHONY: demo test lint venv synth bench clean

venv: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/dev.txt requirements/build-constraints.txt pyproject.toml package.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" wheel "setuptools<74"
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --config-settings editable_mode=compat -e .
	test -d node_modules/aws-cdk || npm install --no-audit --no-fund --silent
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spottrain demo

# lint, format check and types (configured in pyproject.toml), before the tests
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

synth: $(STAMP)
	$(BIN)/python app.py

bench: $(STAMP)
	$(BIN)/python benchmarks/multihead_step.py

clean:
	rm -rf $(VENV) node_modules cdk.out .spottrain .cache .mypy_cache .ruff_cache
