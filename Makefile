# Two entry points on a fresh Debian machine with Python 3.11: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 4

.PHONY: run test setup lock check config-reference benchmark clean

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

# Whole workflow at 2,000 / 100,000 / 1,000,000 admissions, per-stage table (about 10 min here);
# options after BENCH_ARGS, e.g. make benchmark BENCH_ARGS="--sizes 2000 100000".
benchmark: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Contract check of a site's extracts, nothing else: make check EXTRACTS=/data/export [FORMAT=csv.gz]
# [CONFIG="config/config.yaml site.yaml"]. Writes results/check/contract_check.{html,txt}; exit 1 if
# the data cannot support the study.
check: $(STAMP)
	$(BIN)/python -m hdank.contract_check $(if $(EXTRACTS),--extracts "$(EXTRACTS)") $(if $(FORMAT),--format $(FORMAT)) --configfile $(or $(CONFIG),config/config.yaml)

# config/README.md from the config schema (never edited by hand).
config-reference: $(STAMP)
	$(BIN)/python -m hdank.config_reference workflow/schemas/config.schema.yaml config/README.md

lock:
	$(BIN)/pip freeze --exclude-editable | sed '1i # Locked stack: exact versions installed by `make run` / `make test`. Regenerate with `make lock`.' > requirements.lock
	$(BIN)/python -m hdank.conda_env requirements.lock > workflow/envs/hdank.yaml

clean:
	rm -rf results .snakemake
