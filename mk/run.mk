# Stages of a run folder, one target each (the Pi's `make reproduce` chains them inside the container).
SPEC ?= paper
OUT ?= results/$(SPEC)

.PHONY: nightly

nightly: venv  ## The nightly smoke subset with drift check against the baseline (exit 0 ok, 1 drift, 2 failed).
	$(BENCH) nightly --spec smoke
