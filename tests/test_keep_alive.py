"""keep_alive as Ollama 0.6.0 decodes it (api/types.go Duration.UnmarshalJSON): Go's time.ParseDuration for strings,
whole seconds for numbers, negative = forever; the spec loader refuses what Ollama would answer with HTTP 400."""

from __future__ import annotations

import pytest

from bench.backends.goduration import FOREVER_NS, DurationError, keep_alive_ns, parse_duration
from bench.errors import SpecError
from bench.spec import parse_spec

from test_spec import GOOD

S, M, H, MS, US = 10**9, 60 * 10**9, 3600 * 10**9, 10**6, 10**3

# Go's own test vectors: src/time/time_test.go parseDurationTests (the Go 1.24 toolchain of Ollama 0.6.0's go.mod).
GO_VALID = {
    "0": 0, "5s": 5 * S, "30s": 30 * S, "1478s": 1478 * S, "-5s": -5 * S, "+5s": 5 * S, "-0": 0, "+0": 0,
    "5.0s": 5 * S, "5.6s": 5 * S + 600 * MS, "5.s": 5 * S, ".5s": 500 * MS, "1.0s": S, "1.00s": S,
    "1.004s": S + 4 * MS, "1.0040s": S + 4 * MS, "100.00100s": 100 * S + MS, "10ns": 10, "11us": 11 * US,
    "12\u00b5s": 12 * US, "12\u03bcs": 12 * US, "13ms": 13 * MS, "14s": 14 * S, "15m": 15 * M, "16h": 16 * H,
    "3h30m": 3 * H + 30 * M, "10.5s4m": 4 * M + 10 * S + 500 * MS, "-2m3.4s": -(2 * M + 3 * S + 400 * MS),
    "1h2m3s4ms5us6ns": H + 2 * M + 3 * S + 4 * MS + 5 * US + 6, "39h9m14.425s": 39 * H + 9 * M + 14 * S + 425 * MS,
    "52763797000ns": 52763797000, "0.3333333333333333333h": 20 * M, "9007199254740993ns": (1 << 53) + 1,
    "9223372036854775807ns": (1 << 63) - 1, "9223372036854775.807us": (1 << 63) - 1,
    "9223372036s854ms775us807ns": (1 << 63) - 1, "-9223372036854775808ns": -(1 << 63),
    "-9223372036854775.808us": -(1 << 63), "-9223372036s854ms775us808ns": -(1 << 63),
    "-2562047h47m16.854775808s": -(1 << 63), "0.100000000000000000000h": 6 * M,
    "0.830103483285477580700h": 49 * M + 48 * S + 372539827,
}
# parseDurationErrorTests: the input and the quoted form Go's message must contain.
GO_ERRORS = {
    "": '""', "3": '"3"', "-": '"-"', "s": '"s"', ".": '"."', "-.": '"-."', ".s": '".s"', "+.s": '"+.s"',
    "1d": '"1d"', "\ufffd": '"\\xef\\xbf\\xbd"', "\ufffd hello \ufffd world": '"\\xef\\xbf\\xbd hello \\xef\\xbf\\xbd world"',
    "9223372036854775810ns": '"9223372036854775810ns"', "9223372036854775808ns": '"9223372036854775808ns"',
    "-9223372036854775809ns": '"-9223372036854775809ns"', "9223372036854776us": '"9223372036854776us"',
    "3000000h": '"3000000h"', "9223372036854775.808us": '"9223372036854775.808us"',
    "9223372036854ms775us808ns": '"9223372036854ms775us808ns"',
}


@pytest.mark.parametrize("text, ns", GO_VALID.items(), ids=list(GO_VALID))
def test_parse_duration_agrees_with_gos_test_vectors(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text, quoted", GO_ERRORS.items(), ids=[repr(k) for k in GO_ERRORS])
def test_parse_duration_refuses_what_go_refuses(text, quoted):
    with pytest.raises(DurationError) as err:
        parse_duration(text)
    assert quoted in str(err.value) and str(err.value).startswith("time: ")


def test_ollamas_keep_alive_rules():
    assert keep_alive_ns(300) == 300 * S and keep_alive_ns(2.9) == 2 * S  # float64 -> int(t) seconds
    assert keep_alive_ns(-1) == keep_alive_ns("-1m") == FOREVER_NS  # negative: stay loaded
    assert keep_alive_ns("0") == keep_alive_ns(0) == 0  # unload right after the request
    with pytest.raises(DurationError, match=r'time: missing unit in duration "-1"'):
        keep_alive_ns("-1")
    with pytest.raises(DurationError, match="Unsupported type: 'bool'"):
        keep_alive_ns(True)


def spec_with(keep_alive: str):
    return parse_spec(GOOD.replace('kind = "ollama"', f'kind = "ollama"\nkeep_alive = {keep_alive}'), "t.toml")


def test_keep_alive_minus_one_as_a_string_is_refused_at_validation():
    with pytest.raises(SpecError) as err:
        spec_with('"-1"')
    msg = str(err.value)
    assert msg.startswith("t.toml: backend.keep_alive: expected a Go duration") and "\n" not in msg
    assert 'time: missing unit in duration "-1"' in msg and msg.endswith("got '-1'")


@pytest.mark.parametrize("value, kept", [('"30m"', "30m"), ("-1", -1), ("300", 300), ('"0"', "0"), ('"-1m"', "-1m")])
def test_what_ollama_accepts_passes_unchanged(value, kept):
    assert spec_with(value).backend.keep_alive == kept


@pytest.mark.parametrize("value", ['"1d"', '"5 m"', "true", '["5m"]'])
def test_other_mistakes_are_one_line(value):
    with pytest.raises(SpecError, match=r"^t\.toml: backend\.keep_alive: expected a Go duration"):
        spec_with(value)
