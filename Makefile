# Two entry points on a fresh Debian machine with Python 3.11: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 4

.PHONY: run test setup lock check clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	@$(BIN)/python -m hdank.newest_output results

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lock:
	$(BIN)/pip freeze --exclude-editable | sed '1i # Locked stack: exact versions installed by `make run` / `make test`. Regenerate with `make lock`.' > requirements.lock

clean:
	rm -rf results .snakemake
