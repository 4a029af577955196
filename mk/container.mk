# Container targets: the Pi's front door (`make reproduce`), the image, and the CI image test (the meter service: mk/meter.mk).
# Included by the main Makefile, which defines BENCH (host bench command) and PY; mk/run.mk defines SPEC and OUT.
#
# On the Pi every stage of a run executes inside the runner container (`docker compose run --rm bench ...`), so
# the Pi needs Docker and this checkout, nothing else. `verify` prefers the host's $(BENCH) when it exists, so a
# reviewer can check a result folder without Docker or the image that produced it.

COMPOSE ?= docker compose
SPEC ?= paper
OUT ?= results/$(SPEC)

# Facts passed to compose.yaml (build args and bind mounts); override on the command line or in .env.
BENCH_VERSION ?= $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' bench/__init__.py)
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit time, not "now": an unchanged checkout rebuilds to the same labels and hits the layer cache.
BUILD_DATE ?= $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)
BENCH_IMAGE ?= edge-llm-bench:$(BENCH_VERSION)
BENCH_RESULTS_DIR ?= $(abspath $(dir $(OUT)))
BENCH_KEY_DIR ?= $(HOME)/.config/edge-llm-bench
BENCH_UID ?= $(shell id -u)
# The meter socket (mk/meter.mk): compose mounts its directory and joins the group that owns it.
BENCH_METER_DIR ?= $(patsubst %/,%,$(dir $(BENCH_METER_SOCKET)))
BENCH_METER_SOCKET_NAME ?= $(notdir $(BENCH_METER_SOCKET))
BENCH_METER_GID ?= $(shell getent group $(METER_GROUP) | cut -d: -f3)
export BENCH_VERSION GIT_COMMIT BUILD_DATE BENCH_IMAGE BENCH_RESULTS_DIR BENCH_KEY_DIR BENCH_METER_SOCKET BENCH_UID \
	BENCH_METER_DIR BENCH_METER_SOCKET_NAME BENCH_METER_GID

# bench inside the runner container, and the result folder as the container sees it (/results is the bind mount).
CBENCH = $(COMPOSE) run --rm bench
# bench score in the scoring container: the HumanEval sandbox needs root and CAP_SYS_ADMIN there, no network.
CSCORE = $(COMPOSE) run --rm score
C_OUT = /results/$(notdir $(OUT))

.PHONY: image pull-models reproduce sandbox-check run-paper score-paper sign-paper report verify image-test \
	lint-container container-dirs

container-dirs:
	@mkdir -p $(BENCH_RESULTS_DIR) $(BENCH_KEY_DIR)

image:  ## Build the Pi image (Dockerfile.arm64: bench + datasets + pinned Ollama) with docker compose.
	$(COMPOSE) build ollama

pull-models: container-dirs  ## Start the Ollama container and pull the spec's models, digests checked (SPEC=paper).
	$(COMPOSE) up -d --wait ollama
	$(CBENCH) models pull --spec $(SPEC)

run-paper: container-dirs
	$(COMPOSE) up -d --wait ollama
	$(CBENCH) run --spec $(SPEC) --out $(C_OUT)

sandbox-check:  ## Can the scoring container confine HumanEval answers here? (bench sandbox; before a days-long run)
	$(CSCORE) sandbox

score-paper:
	$(CSCORE) score $(C_OUT)

sign-paper: container-dirs
	$(CBENCH) sign $(C_OUT)

# Each step is idempotent and `bench run` resumes where it stopped, so re-running `make reproduce` after an
# interruption (power cut, Ctrl-C) continues the same result folder. The order is fixed, even under make -j.
reproduce:  ## On a Pi 4: image, sandbox check, models, idle baseline + run, scoring, report, signing (resumable).
	@test -S "$(BENCH_METER_SOCKET)" || { echo "no meter socket at $(BENCH_METER_SOCKET): make meter-install (docs/pi.md)"; exit 1; }
	$(MAKE) --no-print-directory image
	$(MAKE) --no-print-directory sandbox-check
	$(MAKE) --no-print-directory pull-models
	$(MAKE) --no-print-directory run-paper
	$(MAKE) --no-print-directory score-paper
	$(MAKE) --no-print-directory report
	$(MAKE) --no-print-directory sign-paper
	@echo "done: $(OUT) (check it with: make verify OUT=$(OUT))"

report: container-dirs  ## Re-compute the paper's tables and plots for OUT (in the container).
	$(CBENCH) report $(C_OUT)

verify:  ## Check OUT offline: signature, checksums, numbers (host bench if present, else the container).
	@if [ -x "$(BENCH)" ]; then set -x; $(BENCH) verify $(OUT); else set -x; $(CBENCH) verify $(C_OUT); fi

image-test:  ## CI: build the image's core stage for linux/arm64 under qemu and self-test it (root, x86_64 host).
	scripts/image-test.sh

lint-container:  ## hadolint Dockerfile.arm64, shellcheck scripts/*.sh, compose schema + docker compose config.
	scripts/lint-tools.sh
	scripts/lint-container.sh
