"""The scpi driver: reply formats and reserved values from the standards and manuals, PyVISA with pyvisa-sim
instruments defined in YAML (tests/instruments/scpi-sim.yaml), PyVISA's own TCP socket transport (pyvisa-py)
against a loopback instrument, and a serial instrument on a real pty.

Facts, with their sources:
- SCPI-99 vol. 1, 7.2.1.5 (and Keysight N6700 series programming guide, "measurement overload"): 9.9E37 is
  infinity (-9.9E37 minus infinity), 9.91E37 is NaN (no valid reading).
- Hioki PW3335 communication manual: +999.99E+09 over range, +888.88E+09 peak over, +777.77E+09 no valid data.
- Rigol DP800 programming guide, MEAS:ALL?: "voltage,current,power" of a channel.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from bench.errors import MeterError
from bench.meter.drivers import create
from bench.meter.drivers.base import DeviceGone
from bench.meter.drivers.scpi_reply import Overload, ReplyFormat
from meter_emulators import ScpiDevice, ScpiTcpServer

SIM = os.path.join(os.path.dirname(__file__), "instruments", "scpi-sim.yaml") + "@sim"
N6781A = "USB0::0x2A8D::0x0F02::MY56000123::0::INSTR"
DP832 = "TCPIP0::10.0.0.7::5555::SOCKET"
PW3335 = "ASRL7::INSTR"


def test_reply_formats_take_the_named_items():
    assert ReplyFormat.parse("p", "").watts(b"+3.2E+00\r") == pytest.approx(3.2)
    assert ReplyFormat.parse("v,i", "").watts(b"5.1;0.62") == pytest.approx(3.162)
    assert ReplyFormat.parse("v,i,p", "").watts(b"5.0012,0.6004,2.9000") == pytest.approx(2.9)  # P, not V x I
    assert ReplyFormat.parse("-,-,p", "").watts(b"230.1,0.02,4.25") == pytest.approx(4.25)
    for fmt, bad in (("p", b"1;2"), ("v,i", b"5.0"), ("v,i,p", b"1,2"), ("p", b'-113,"Undefined header"'),
                     ("p", b""), ("p", b"abc")):
        with pytest.raises(ValueError) as err:
            ReplyFormat.parse(fmt, "").watts(bad)
        assert not isinstance(err.value, Overload)


@pytest.mark.parametrize("reply", [b"9.9E37", b"+9.90000E+37", b"-9.9E+37", b"9.91E37", b"NAN", b"+INF"])
def test_scpi99_infinity_and_nan_are_overloads_not_watts(reply):
    with pytest.raises(Overload):
        ReplyFormat.parse("p", "").watts(reply)
    with pytest.raises(Overload):
        ReplyFormat.parse("v,i", "").watts(b"5.0," + reply)


def test_vendor_sentinels_only_when_configured():
    assert ReplyFormat.parse("p", "").watts(b"+777.77E+09") == pytest.approx(777.77e9)
    for reply in (b"+999.99E+09", b"-888.88E+09", b"+777.77E+09"):
        with pytest.raises(Overload):
            ReplyFormat.parse("p", "hioki").watts(reply)
    with pytest.raises(Overload):
        ReplyFormat.parse("p", "1e30").watts(b"-1.0E+30")


@pytest.mark.parametrize("opts,names", [
    ({"reply": "v,x"}, "option reply='v,x'"),
    ({"reply": "v"}, "option reply='v': needs p, or both v and i"),
    ({"sentinels": "keysight"}, "option sentinels='keysight'"),
    ({"rate_hz": "500"}, "option rate_hz=500"),
    ({"port": ""}, "exactly one of the options port="),
])
def test_bad_options_are_one_line_errors_naming_the_option(opts, names):
    with pytest.raises(MeterError) as err:
        create("scpi", {"port": "/dev/null", **opts})
    assert names in str(err.value) and "\n" not in str(err.value)


def read_for(drv, seconds):
    t, p, gaps = [], [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        b = drv.read()
        t.extend(b.t_ns.tolist())
        p.extend(b.power_w.tolist())
        gaps += b.gap_before
    return np.array(t), np.array(p), gaps


def test_pyvisa_sim_overload_is_a_gap_and_setup_is_sent_at_open():
    drv = create("scpi", {"resource": N6781A, "visa_library": SIM, "rate_hz": "50", "timeout_s": "0.2",
                          "setup": "SYST:REM|SENS:SWE:TINT 0.1", "integration_s": "0.1"})
    drv.open()
    try:
        assert drv.idn.startswith("Keysight Technologies,N6781A")
        _, p, gaps = read_for(drv, 0.2)
        assert len(p) >= 3 and np.allclose(p, 3.25) and gaps == 0
        for value in (9.9e37, 9.91e37):
            drv._link.write_line(f"TEST:POW {value:e}")  # the instrument goes into overload
            _, p, gaps = read_for(drv, 0.15)
            assert len(p) == 0 and gaps >= 3
        drv._link.write_line("TEST:POW 4.5")
        _, p, _ = read_for(drv, 0.1)
        assert np.allclose(p, 4.5)
    finally:
        drv.close()
    assert drv.overloads >= 6 and drv.garbage == 0
    assert drv.uncertainty().time_s >= 0.05  # half the 0.1 s integration time is part of every stamp's uncertainty


def test_pyvisa_sim_setup_error_fails_open_with_the_instruments_error():
    drv = create("scpi", {"resource": N6781A, "visa_library": SIM, "setup": "SYST:REM|VOLT:PROT 99"})
    with pytest.raises(MeterError, match='setup .* left an error: -113,"Undefined header"'):
        drv.open()
    drv.close()


def test_pyvisa_sim_compound_and_vendor_replies():
    drv = create("scpi", {"resource": DP832, "visa_library": SIM, "query": "MEAS:ALL? CH1", "reply": "v,i,p",
                          "rate_hz": "50"})
    drv.open()
    _, p, _ = read_for(drv, 0.1)
    drv.close()
    assert drv.idn.startswith("RIGOL") and np.allclose(p, 2.9)
    drv = create("scpi", {"resource": PW3335, "visa_library": SIM, "query": ":MEAS? P", "sentinels": "hioki",
                          "terminator": "\\r\\n", "error_query": ":ERR?", "rate_hz": "50"})
    drv.open()
    try:
        _, p, _ = read_for(drv, 0.1)
        assert np.allclose(p, 3.5)
        drv._link.write_line(f"TEST:POW {777.77e9:e}")  # Hioki: no valid data
        _, p, gaps = read_for(drv, 0.1)
        assert len(p) == 0 and gaps >= 2 and drv.overloads >= 2
    finally:
        drv.close()


def assert_each_reply_paired_with_its_query(t_ns, p, t0_ns, tol_s=0.05):
    """The instrument reports the time the query reached it; a reply paired with a later query is a period off."""
    err = (t_ns - t0_ns) / 1e9 - p
    assert np.all(np.abs(err) < tol_s), f"misplaced replies: {np.round(err[np.abs(err) >= tol_s], 3)}"


def test_late_reply_over_pyvisa_py_socket_is_drained(monkeypatch):
    with ScpiTcpServer(power=lambda t: (t, 1.0), late_every=7, late_s=0.35) as server:
        t0_ns = time.monotonic_ns() - int((time.monotonic() - server.instrument.t0) * 1e9)
        drv = create("scpi", {"resource": f"TCPIP0::127.0.0.1::{server.port}::SOCKET", "visa_library": "@py",
                              "rate_hz": "20", "timeout_s": "0.15"})
        drv.open()
        try:
            t, p, gaps = read_for(drv, 2.5)
        finally:
            drv.close()
    assert drv.timeouts >= 2 and drv.late >= 2 and gaps >= 2
    assert len(p) >= 20
    assert_each_reply_paired_with_its_query(t, p, t0_ns)


def test_late_reply_over_serial_is_drained_and_junk_counted(tmp_path):
    link = str(tmp_path / "ttySCPI")
    with ScpiDevice(link, power=lambda t: (t, 1.0), late_every=6, late_s=0.3, junk_every=11) as dev:
        t0_ns = time.monotonic_ns() - int((time.monotonic() - dev.instrument.t0) * 1e9)
        drv = create("scpi", {"port": link, "rate_hz": "20", "timeout_s": "0.15", "setup": "SYST:REM"})
        drv.open()
        try:
            t, p, _ = read_for(drv, 2.5)
        finally:
            drv.close()
    assert dev.instrument.setup == [b"SYST:REM"]
    assert drv.timeouts >= 2 and drv.late >= 2 and drv.garbage >= 1
    assert_each_reply_paired_with_its_query(t, p, t0_ns)


@pytest.mark.parametrize("query,reply", [("MEAS:POW?", "p"), ("MEAS:VOLT?;:MEAS:CURR?", "v,i")])
def test_serial_instrument_and_raw_socket_url(tmp_path, query, reply):
    link = str(tmp_path / "ttySCPI")
    with ScpiDevice(link, power=lambda t: (12.0, 0.25), overload_every=5) as dev:
        drv = create("scpi", {"port": link, "query": query, "reply": reply, "rate_hz": "40", "timeout_s": "0.3"})
        drv.open()
        try:
            _, p, gaps = read_for(drv, 0.8)
        finally:
            drv.close()
    assert drv.idn.startswith("EMULATED,PA-1000") and dev.instrument.queries >= 20
    assert drv.overloads >= 3 and gaps >= 3 and len(p) >= 12 and np.allclose(p, 3.0)
    with ScpiTcpServer(power=lambda t: (12.0, 0.25)) as server:  # pyserial's socket:// URL: a raw LAN socket
        drv = create("scpi", {"port": f"socket://127.0.0.1:{server.port}", "rate_hz": "40"})
        drv.open()
        _, p, _ = read_for(drv, 0.3)
        drv.close()
    assert len(p) >= 5 and np.allclose(p, 3.0)


def test_silent_instrument_is_gone(tmp_path):
    with ScpiTcpServer() as server:
        drv = create("scpi", {"port": f"socket://127.0.0.1:{server.port}", "query": "MEAS:NOTHING?",
                              "timeout_s": "0.05", "max_failures": "3", "idn": ""})
        drv.open()
        with pytest.raises(DeviceGone, match="3 queries without a valid reply"):
            for _ in range(10):
                drv.read()
        drv.close()


def test_readings_come_in_batches_and_each_failure_is_still_a_gap_where_it_happened(tmp_path):
    """batch_s: several readings per read() (fewer daemon wake-ups), no batch longer than batch_s, and an overload
    ends its batch, so the gap stands exactly where the reading was lost, never hidden inside a batch."""
    link = str(tmp_path / "ttySCPI")
    with ScpiDevice(link, power=lambda t: (12.0, 0.25), overload_every=13) as dev:
        drv = create("scpi", {"port": link, "rate_hz": "40", "batch_s": "0.2"})
        drv.open()
        try:
            batches = [drv.read() for _ in range(14)]
        finally:
            drv.close()
    sizes = [len(b.t_ns) for b in batches]
    assert max(sizes) >= 6 and max(sizes) <= 0.2 * 40 + 1, sizes
    assert dev.instrument.queries >= 60
    pending = drv._gap_next  # the last batch ended on an overload: its gap opens the next batch
    assert sum(b.gap_before for b in batches) + pending == drv.overloads >= 3
    for b in batches:  # inside a batch the readings follow each other at the query rate
        assert np.all(np.diff(b.t_ns) < 1.5e9 / 40)


def test_an_instrument_lost_mid_batch_hands_on_the_readings_before_it(tmp_path):
    with ScpiTcpServer(power=lambda t: (12.0, 0.25)) as server:
        drv = create("scpi", {"port": f"socket://127.0.0.1:{server.port}", "rate_hz": "40", "batch_s": "1.5",
                              "timeout_s": "0.1", "max_failures": "2"})
        drv.open()
        threading.Timer(0.4, server.__exit__).start()  # the instrument closes its socket during the first batch
        first = drv.read()
        with pytest.raises(DeviceGone, match="closed the connection"):
            drv.read()
        drv.close()
    assert 6 <= len(first.t_ns) <= 0.5 * 40 and np.allclose(first.power_w, 3.0)


USB_RESOURCE = "USB0::0x0957::0x0F07::MY12345678::0::INSTR"  # USB[board]::vendor::model::serial::interface::INSTR (IVI VPP-4.3)


def test_usbtmc_through_pyvisa_py_lists_and_refuses_cleanly_without_a_device():
    """pyvisa-py's USBTMC sessions are PyUSB + libusb (installed by make venv / apt, pinned in requirements.lock);
    with no instrument plugged in, the listing is empty and opening one is one line naming the resource."""
    import pyvisa

    if not pyvisa.ResourceManager("@py").visalib.get_debug_info()["USB INSTR"].startswith("Available"):
        pytest.fail("pyvisa-py has no USB INSTR sessions here: install pyusb (make venv) and libusb-1.0-0 (.ci/run)")
    assert pyvisa.ResourceManager("@py").list_resources("USB?*::INSTR") == ()
    drv = create("scpi", {"resource": USB_RESOURCE, "visa_library": "@py"})
    with pytest.raises(DeviceGone) as err:
        drv.open()
    assert USB_RESOURCE in str(err.value) and "No device found" in str(err.value) and "\n" not in str(err.value)


def test_usbtmc_without_libusb_is_one_line_saying_what_to_install(monkeypatch):
    import usb.backend.libusb0
    import usb.backend.libusb1
    import usb.backend.openusb

    for backend in (usb.backend.libusb1, usb.backend.libusb0, usb.backend.openusb):  # as on a host without libusb
        monkeypatch.setattr(backend, "get_backend", lambda *a, **k: None)
    drv = create("scpi", {"resource": USB_RESOURCE, "visa_library": "@py"})
    with pytest.raises(DeviceGone) as err:
        drv.open()
    msg = str(err.value)
    assert "\n" not in msg and "No backend available" in msg and "apt-get install libusb-1.0-0" in msg
