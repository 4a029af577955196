"""Meter drivers. Each module holds one driver class and registers it by name; the imports below are the whole
list (no scanning), so ``DRIVERS`` is complete once this package is imported."""

from bench.meter.drivers import ina_serial, joulescope, replay, scpi, sim, um  # noqa: F401
from bench.meter.drivers.base import DRIVERS, DeviceGone, Driver, create, driver_class, register  # noqa: F401
