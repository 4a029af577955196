"""One owner for where the meter is (spec, then environment, then default) and for what a daemon is told."""

from __future__ import annotations

import pytest

from bench.errors import MeterError
from bench.meter import config as meter_config
from bench.meter.address import DEFAULT_SOCKET, parse, resolve
from bench.meter.config import DaemonConfig, parse_listen


def test_spec_then_environment_then_default():
    env = {"BENCH_METER_SOCKET": "/srv/m.sock", "BENCH_METER_TLS_DIR": "/keys"}
    assert resolve("/spec.sock", env).path == "/spec.sock"
    assert resolve(None, env).path == "/srv/m.sock"
    assert resolve(None, {}).path == DEFAULT_SOCKET
    remote = resolve("tls://meter-host:7461", env)
    assert (remote.host, remote.port, remote.tls_dir, remote.remote) == ("meter-host", 7461, "/keys", True)
    assert str(parse("tls://[fe80::1]:7461", env)) == "tls://[fe80::1]:7461"
    assert parse("unix:/run/x.sock", env).path == "/run/x.sock"


def test_no_shipped_spec_pins_the_socket():
    """A spec's meter.socket outranks $BENCH_METER_SOCKET (what compose sets for the container), so a shipped spec
    that spelled out the default would silently ignore the environment."""
    from bench.spec import load_spec, shipped_specs

    pinned = {name: load_spec(name).meter.socket for name in shipped_specs()}
    assert {name: s for name, s in pinned.items() if s is not None} == {}


@pytest.mark.parametrize("text", ["meter-host", "meter-host:", ":7461", "host:0", "host:65536", "host:seven"])
def test_a_bad_address_is_one_line_naming_it(text):
    with pytest.raises(MeterError, match=f"listen address {text!r}: expected HOST:PORT"):
        parse_listen(text)


def test_config_round_trips_and_refuses_what_it_does_not_know(tmp_path):
    cfg = DaemonConfig("sim", {"rate_hz": "100"}, "/tmp/m.sock", listen="0.0.0.0:7461", tls_dir="/k", buffer_s=60)
    assert meter_config.load(meter_config.dump(cfg, tmp_path / "m.toml")) == cfg
    (tmp_path / "bad.toml").write_text('driver = "sim"\nsocket_path = "/x"\nbufer_s = 3\n')
    with pytest.raises(MeterError, match="unknown key 'bufer_s'"):
        meter_config.load(tmp_path / "bad.toml")
    with pytest.raises(MeterError, match="needs --tls-dir"):
        DaemonConfig("sim", {}, None, listen="0.0.0.0:7461")
    with pytest.raises(MeterError, match="nothing to serve on"):
        DaemonConfig("sim", {})
    (tmp_path / "junk.toml").write_text("driver = ")
    with pytest.raises(MeterError, match="not valid TOML"):
        meter_config.load(tmp_path / "junk.toml")
