# The meter daemon as a systemd service, on the measured Pi or on a separate meter host (one route for both:
# scripts/meter-install.sh, a venv with only bench.meter's dependencies; no Docker needed). Included by Makefile.
#
#   make meter-install METER_DRIVER=ina-serial METER_OPTS="port=/dev/ttyACM0"
#   make meter-install METER_DRIVER=joulescope METER_LISTEN=0.0.0.0:7461   # a meter host (+ extra meter-joulescope)

BENCH_METER_SOCKET ?= /run/edge-llm-bench/meter.sock
METER_DRIVER ?= ina-serial
METER_OPTS ?= port=/dev/ttyACM0
METER_LISTEN ?=
METER_PIP ?=
METER_GROUP ?= bench

.PHONY: meter-install

meter-install:  ## Install and start the meter daemon as a systemd service (METER_DRIVER, METER_OPTS, METER_LISTEN).
	sudo BENCH_METER_SOCKET=$(BENCH_METER_SOCKET) scripts/meter-install.sh --driver $(METER_DRIVER) \
	  $(addprefix --opt ,$(METER_OPTS)) $(if $(METER_LISTEN),--listen $(METER_LISTEN)) \
	  $(addprefix --pip ,$(METER_PIP)) --group $(METER_GROUP)
