"""Adding a meter driver is its module plus one import in ``bench/meter/drivers/__init__.py``: the daemon, its
``info`` (contract A's uncertainty), its energy windows and ``bench meter drivers`` reach a new driver through
``DRIVERS`` alone. Here this test module is the new driver's module; registering it is what the import does.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import _register, cli
from bench.errors import CatalogError
from bench.meter import client
from bench.meter.config import DaemonConfig
from bench.meter.daemon import Daemon
from bench.meter.drivers import DRIVERS, create
from bench.meter.drivers.base import Driver, Option, Uncertainty, register
from bench.meter.samples import SampleBatch

NAME = "toy-steady"
RATE_HZ = 200.0
DECLARED = Uncertainty(0.01, 0.002, 1e-4, "toy: declared by this test")


class SteadyDriver(Driver):
    """A meter that reads a constant power, delivered in 20 ms batches stamped on the host's monotonic clock."""

    OPTIONS = {"watts": Option(float, 3.5, "the power it reads (W)")}
    NOTE = "a test's toy"

    def __init__(self, name, options) -> None:  # noqa: ANN001 - the Driver signature
        super().__init__(name, options)
        self._next_ns = 0

    @property
    def nominal_rate_hz(self) -> float:
        return RATE_HZ

    def open(self) -> None:
        self._next_ns = time.monotonic_ns()

    def read(self) -> SampleBatch:
        time.sleep(0.02)
        now, step = time.monotonic_ns(), int(1e9 / RATE_HZ)
        stamps = np.arange(self._next_ns, now, step, dtype=np.int64)
        self._next_ns = int(stamps[-1]) + step if len(stamps) else self._next_ns
        return SampleBatch.of(stamps, np.full(len(stamps), self.opts["watts"]))

    def close(self) -> None:
        pass

    def uncertainty(self) -> Uncertainty:
        return DECLARED


@pytest.fixture
def steady():
    """What the one import line does: the module runs its ``@register``."""
    register(NAME)(SteadyDriver)
    yield
    DRIVERS.pop(NAME)


@pytest.fixture
def daemon(steady):
    folder = tempfile.mkdtemp(prefix="bench-toy-meter-", dir="/tmp")  # a Unix socket path must stay short
    d = Daemon(DaemonConfig(driver=NAME, options={"watts": "2.5"}, socket_path=str(Path(folder, "m.sock"))))
    serving = threading.Thread(target=d.serve, daemon=True)
    serving.start()
    try:
        yield d
    finally:
        d.stop()
        serving.join(timeout=5)
        shutil.rmtree(folder, ignore_errors=True)


def _connected(path: str, timeout_s: float = 5.0) -> client.MeterClient:
    deadline = time.monotonic() + timeout_s
    while not Path(path).exists():
        assert time.monotonic() < deadline, "the daemon never bound its socket"
        time.sleep(0.01)
    return client.connect(path)


def test_a_new_driver_is_served_through_the_registry_alone(daemon):
    with _connected(daemon.config.socket_path) as meter:
        info = meter.info()
        start = time.monotonic_ns()
        time.sleep(0.3)
        reading = meter.energy(start, time.monotonic_ns(), wait_s=2.0)
    assert info["uncertainty"] == DECLARED.as_dict()
    assert info["driver"] == NAME and info["options"] == {"watts": 2.5}
    assert reading.coverage > 0.9 and reading.mean_w == pytest.approx(2.5)
    assert reading.energy_j == pytest.approx(2.5 * reading.covered_s, rel=0.02)


def test_bench_meter_drivers_lists_it(steady):
    _register()
    out = CliRunner().invoke(cli, ["meter", "drivers"])
    assert out.exit_code == 0, out.output
    assert f"{NAME:12s} ok (a test's toy)" in out.output.splitlines()


def test_a_name_is_taken_once_and_an_unknown_one_is_one_line(steady):
    with pytest.raises(ValueError, match=f"driver name '{NAME}' is already registered by SteadyDriver"):
        register(NAME)(SteadyDriver)
    with pytest.raises(CatalogError, match=f"unknown meter driver 'toy-stedy'. Did you mean '{NAME}'"):
        create("toy-stedy", {})
