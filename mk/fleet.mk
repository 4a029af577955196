# The fleet (docs/fleet.md): a shard on a host without Docker, and the container fleet on this machine.
# Included by the main Makefile, which defines BENCH and PY; SPEC and OUT as in mk/run.mk.

.PHONY: fleet-shard fleet-demo fleet-test

fleet-shard:  ## One fleet shard from a venv (bench_runtime venv): run, score, report, sign; resumable (SPEC, OUT, VENV).
	$(BENCH) pipeline --spec $(SPEC) --out $(OUT) --no-progress

fleet-demo: venv  ## Three containers as a fleet, driven by ansible-playbook: plan, run, kill one, rerun, fetch, merge.
	PYTHON=$(PY) scripts/fleet-demo.sh

fleet-test: venv  ## CI: the container fleet, then its checks (answers lost/duplicated, verify, refusals).
	BENCH_FLEET_CONTAINERS=1 $(PY) -m pytest -q -p no:cacheprovider -s tests/test_fleet_containers.py
