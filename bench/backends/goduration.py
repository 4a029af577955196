"""Go's ``time.ParseDuration`` and Ollama's ``keep_alive`` rules, so a spec is refused where Ollama would refuse it.

Ollama 0.6.0 decodes ``keep_alive`` with ``api.Duration.UnmarshalJSON`` (``api/types.go``): a JSON number is whole
seconds (truncated), a string goes through Go's ``time.ParseDuration`` (Ollama is built with Go 1.24), and anything
negative means "stay loaded forever". A string without a unit (``"-1"``, ``"300"``) is an HTTP 400, ``"0"`` is the
one unit-less string Go accepts.
"""

from __future__ import annotations

import math

NS_PER_S = 1_000_000_000
FOREVER_NS = 2**63 - 1  # math.MaxInt64 nanoseconds: what Ollama stores for a negative keep_alive
_UNITS_NS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000, "s": NS_PER_S,
             "m": 60 * NS_PER_S, "h": 3600 * NS_PER_S}
_DIGITS = "0123456789"
_LIMIT = 1 << 63


class DurationError(ValueError):
    """The text Go's parser would return, e.g. ``time: missing unit in duration "-1"``."""


def _quote(s: str) -> str:
    """Go's time.quote: printable ASCII as is (backslash before ``"`` and ``\\``), other bytes as ``\\xNN``."""
    out = []
    for ch in s:
        if " " <= ch < "\x80":
            out.append("\\" + ch if ch in '"\\' else ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8"))
    return '"' + "".join(out) + '"'


def _leading_int(s: str) -> tuple[int, str] | None:
    """Go's leadingInt: the leading digits as an integer, None on overflow past 1<<63."""
    x, i = 0, 0
    while i < len(s) and s[i] in _DIGITS:
        if x > _LIMIT // 10:
            return None
        x = x * 10 + int(s[i])
        if x > _LIMIT:
            return None
        i += 1
    return x, s[i:]


def _leading_fraction(s: str) -> tuple[int, float, str]:
    """Go's leadingFraction: digits after the point (those past int64 precision are dropped) and their scale."""
    x, scale, i, overflow = 0, 1.0, 0, False
    while i < len(s) and s[i] in _DIGITS:
        if not overflow:
            y = x * 10 + int(s[i])
            if x > (_LIMIT - 1) // 10 or y > _LIMIT:
                overflow = True
            else:
                x, scale = y, scale * 10
        i += 1
    return x, scale, s[i:]


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration string such as ``"300ms"``, ``"-1.5h"`` or ``"2h45m"``; raises DurationError
    with Go's own message otherwise (time.ParseDuration, Go 1.24 src/time/format.go)."""
    orig, s, neg = text, text, False
    invalid = DurationError(f"time: invalid duration {_quote(orig)}")
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        if s[0] != "." and s[0] not in _DIGITS:
            raise invalid
        before = len(s)
        lead = _leading_int(s)
        if lead is None:
            raise invalid
        v, s = lead
        pre = len(s) != before
        f, scale, post = 0, 1.0, False
        if s[:1] == ".":
            s = s[1:]
            before = len(s)
            f, scale, s = _leading_fraction(s)
            post = len(s) != before
        if not pre and not post:
            raise invalid
        i = 0
        while i < len(s) and s[i] != "." and s[i] not in _DIGITS:
            i += 1
        if i == 0:
            raise DurationError(f"time: missing unit in duration {_quote(orig)}")
        unit, s = s[:i], s[i:]
        if unit not in _UNITS_NS:
            raise DurationError(f"time: unknown unit {_quote(unit)} in duration {_quote(orig)}")
        scale_ns = _UNITS_NS[unit]
        if v > _LIMIT // scale_ns:
            raise invalid
        v *= scale_ns
        if f > 0:
            v += int(float(f) * (float(scale_ns) / scale))
            if v > _LIMIT:
                raise invalid
        total += v
        if total > _LIMIT:
            raise invalid
    if neg:
        return -total
    if total > _LIMIT - 1:
        raise invalid
    return total


def keep_alive_ns(value: object) -> int:
    """How long Ollama keeps a model loaded after a request with this ``keep_alive`` (FOREVER_NS when negative)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DurationError(f"Unsupported type: '{type(value).__name__}'")
    if isinstance(value, str):
        ns = parse_duration(value)
    elif not math.isfinite(value):
        raise DurationError(f"keep_alive must be a finite number of seconds, got {value!r}")
    else:
        ns = FOREVER_NS if value < 0 else int(value) * NS_PER_S
    return FOREVER_NS if ns < 0 else ns


__all__ = ["DurationError", "FOREVER_NS", "keep_alive_ns", "parse_duration"]
