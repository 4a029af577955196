"""The joulescope driver on the real vendor package (joulescope 1.5.0) with only its C binding replaced
(tests/joulescope_binding.py says what the binding does and where that comes from).

Facts, with their sources:
- joulescope/parameters_v1.py, ``reduction_frequency``: options 100, 50, 20, 10, 5, 2, 1 Hz.
- joulescope/v1/device.py ``_statistics_start``: a JS110 scanned with ``config='off'`` subscribes the on-instrument
  ``s/sstats/value``; otherwise it publishes ``s/stats/ctrl`` = 1 (host-side statistics, the device streams).
- joulescope/v1/js110.py: ``reduction_frequency`` only sets ``s/stats/scnt`` (host-side statistics); js220.py sets
  ``s/stats/scnt`` = 1e6 / rate on the instrument.
"""

from __future__ import annotations


import numpy as np
import pytest

from bench.errors import MeterError
from bench.meter.drivers import create
from joulescope_binding import Instrument, install
from meter_emulators import collect


def stamp_errors_ms(t, truth):
    """Each sample against the interval it stands for (nearest true midpoint)."""
    mids = np.array([(a + b) / 2 for a, b, _ in truth])
    nearest = np.abs(t[:, None] - mids[None, :]).argmin(axis=1)
    return (t - mids[nearest]) / 1e6, nearest


@pytest.mark.parametrize("rate", ["3", "25", "1000"])
def test_illegal_rate_is_one_line_naming_the_legal_set(rate):
    with pytest.raises(MeterError) as err:
        create("joulescope", {"reduction_hz": rate})
    assert str(err.value) == (f"driver 'joulescope': option reduction_hz={rate}: the instrument accepts only "
                              "1, 2, 5, 10, 20, 50, 100 Hz")


def test_js110_uses_on_instrument_statistics_and_the_device_counter(monkeypatch):
    inst = Instrument("u/js110/000415", stall_at=4)
    install(monkeypatch, inst)
    drv = create("joulescope", {})
    drv.open()
    try:
        t, p = collect(drv, 4.2)  # the 32-bit counter wraps 1.5 s in
    finally:
        drv.close()
    assert not inst.host_streaming, inst.published  # nothing streams into the host
    assert ("s/i/range/select", 0x80) in inst.published or ("s/i/range/select", 128) in inst.published
    assert drv.device_id() == "joulescope-js110-000415" and drv.model == "js110"
    assert len(t) >= 6 and np.all(np.diff(t) > 0)
    err_ms, nearest = stamp_errors_ms(t, inst.truth)
    assert len(set(nearest.tolist())) == len(t)  # one sample per interval, the stalled one included
    # not 'arrival minus half an interval' (250 ms at 2 Hz), and the stalled record is not bunched with the next
    assert np.median(np.abs(err_ms)) < 8 and np.all(np.abs(err_ms) < 40), err_ms
    truth_w = np.array([w for _, _, w in inst.truth])[nearest]
    assert np.allclose(p, truth_w, rtol=1e-4)  # the accumulator's energy over each span (40 ppm drift)


def test_js110_refuses_a_rate_it_cannot_compute_on_the_instrument(monkeypatch):
    install(monkeypatch, Instrument("u/js110/000415"))
    drv = create("joulescope", {"reduction_hz": "50"})
    with pytest.raises(MeterError, match="JS110: reduction_hz=50 needs host-side statistics"):
        drv.open()
    drv.close()


def test_js220_statistics_at_the_chosen_rate(monkeypatch):
    inst = Instrument("u/js220/001234", drift_ppm=-60.0, counter_start=10**9)
    install(monkeypatch, inst)
    drv = create("joulescope", {"reduction_hz": "50"})
    drv.open()
    try:
        t, p = collect(drv, 2.0)
    finally:
        drv.close()
    assert ("s/stats/scnt", 20_000) in inst.published  # 1 Msps / 50 Hz, on the instrument
    assert len(t) >= 60
    err_ms, nearest = stamp_errors_ms(t, inst.truth)
    settled = err_ms[len(err_ms) // 2:]
    assert np.median(np.abs(settled)) < 5 and np.percentile(np.abs(settled), 95) < 8
    assert drv.uncertainty().time_s >= 0.005


def test_failed_parameter_set_is_an_error_not_a_warning(monkeypatch):
    install(monkeypatch, Instrument("u/js220/001234"), fail_topics=("s/stats/scnt",))
    drv = create("joulescope", {"reduction_hz": "20"})
    with pytest.raises(MeterError, match="configuring the statistics at 20 Hz failed: jsdrv_publish failed"):
        drv.open()
    drv.close()


def test_silence_means_gone(monkeypatch):
    inst = Instrument("u/js220/001234")
    install(monkeypatch, inst)
    drv = create("joulescope", {"reduction_hz": "10", "silence_s": "0.6"})
    drv.open()
    collect(drv, 0.8)
    inst.is_open = False  # the instrument stops talking
    with pytest.raises(MeterError, match="no statistics for 0.6 s"):
        collect(drv, 1.0)
    drv.close()
