# Tessera developer entry points. Needs only Python 3.11 and make: uv is bootstrapped into .tools/.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tessera-installed
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install demo test lint typecheck layers pytest bench docs clean

install: $(STAMP)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras --compile-bytecode --python $(PYTHON)
	@# Byte-compile our own sources too: start-up time matters and some environments
	@# set PYTHONDONTWRITEBYTECODE, so Python would otherwise recompile on every command.
	$(BIN)/python -m compileall -q src
	@touch $@

demo: install
	$(BIN)/tessera demo

lint: install
	$(BIN)/ruff check src tests bench docs
	$(BIN)/ruff format --check src tests bench docs

typecheck: install
	$(BIN)/mypy

layers: install
	$(BIN)/lint-imports

pytest: install
	$(BIN)/pytest

test: lint typecheck layers pytest

bench: install
	$(BIN)/python bench/pipeline/run.py --wait-idle 60

docs: install
	$(BIN)/python docs/gen_reference.py

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache tessera-demo
