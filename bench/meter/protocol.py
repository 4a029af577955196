"""The meter socket protocol, in this module only: message dataclasses, the JSON-lines codec, the versioned
hello both sides check, and errors that carry a code and a sentence. See docs/meter-protocol.md.

One JSON object per line (UTF-8, ``\\n``-terminated, at most ``MAX_LINE_BYTES``). The client speaks first with a
hello; the daemon answers with its own hello or a ``version_mismatch`` error and closes. Then each request carries
an ``id`` the reply echoes, so a client may pipeline requests.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from bench.errors import MeterError

PROTOCOL_NAME = "bench-meter"
PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 64 * 1024
MAX_LABEL_CHARS = 128
MAX_WAIT_S = 10.0
LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/=+@# ")

# Error codes (stable strings; the message is a sentence for humans).
BAD_JSON = "bad_json"
TOO_LARGE = "too_large"
BAD_REQUEST = "bad_request"
UNKNOWN_OP = "unknown_op"
HELLO_REQUIRED = "hello_required"
VERSION_MISMATCH = "version_mismatch"
BUSY = "busy"
HELLO_TIMEOUT = "hello_timeout"
INTERNAL = "internal"
SHUTTING_DOWN = "shutting_down"

MAX_SAMPLE_POINTS = 1500  # ~40 bytes a point keeps a samples reply under MAX_LINE_BYTES
MAX_SPANS = 8  # windows per ``windows`` request (an answer needs three)
OPS = ("hello", "energy", "windows", "samples", "stats", "info", "mark", "stream", "time")


class ProtocolError(MeterError):
    """A message that breaks the protocol; ``code`` is one of the error codes above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ProtocolMismatch(ProtocolError):
    """The other side speaks a different protocol or version."""

    def __init__(self, message: str) -> None:
        super().__init__(VERSION_MISMATCH, message)


class RemoteError(MeterError):
    """The daemon answered a request with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"meter daemon refused the request ({code}): {message}")
        self.code = code
        self.message = message


# -- messages -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """Sent first by the client and answered by the daemon; both check ``protocol`` and ``version``. The daemon's
    names its ``clock``: the kernel's boot id (plus ``+synthetic`` for a test clock), so a client knows whether the
    daemon's CLOCK_MONOTONIC is its own or another machine's that it must convert from."""

    role: str  # "client" or "daemon"
    software: str
    protocol: str = PROTOCOL_NAME
    version: int = PROTOCOL_VERSION
    clock: str | None = None
    op: str = "hello"


@dataclass(frozen=True)
class EnergyRequest:
    id: int
    start_ns: int
    end_ns: int
    wait_s: float = 2.0
    edge_slack_s: float = 0.0  # how far a window edge's true instant may be from its stamp (bounds only)
    op: str = "energy"


@dataclass(frozen=True)
class WindowsRequest:
    """Several windows in one round trip (an answer's whole, prefill and decode windows): one wake-up, not three."""

    id: int
    spans_ns: list[list[int]]  # [[start_ns, end_ns, inner_ns...], ...]
    wait_s: float = 2.0
    edge_slack_s: float = 0.0
    op: str = "windows"


@dataclass(frozen=True)
class SamplesRequest:
    """The stored samples of a window (thinned to ``max_points``), for power-trace plots; not for energy."""

    id: int
    start_ns: int
    end_ns: int
    max_points: int = 1000
    op: str = "samples"


@dataclass(frozen=True)
class StatsRequest:
    id: int
    op: str = "stats"


@dataclass(frozen=True)
class InfoRequest:
    id: int
    op: str = "info"


@dataclass(frozen=True)
class MarkRequest:
    id: int
    label: str
    t_ns: int | None = None
    op: str = "mark"


@dataclass(frozen=True)
class StreamRequest:
    """Push ``samples`` events from now on; ends with an ``end`` event after ``max_s`` (None: until disconnect)."""

    id: int
    max_s: float | None = None
    op: str = "stream"


@dataclass(frozen=True)
class TimeRequest:
    """A timed round trip and nothing else: the reply's ``rx_ns``/``tx_ns`` are what the client wants."""

    id: int
    op: str = "time"


Request = (EnergyRequest | WindowsRequest | SamplesRequest | StatsRequest | InfoRequest | MarkRequest | StreamRequest
           | TimeRequest)


@dataclass(frozen=True)
class Reply:
    """``rx_ns``/``tx_ns``: the daemon's clock when the request arrived and when the reply left (every reply
    has them), so every exchange is also a sample of the offset between the two machines' clocks."""

    id: int | None
    result: Mapping[str, Any]
    ok: bool = True
    rx_ns: int | None = None
    tx_ns: int | None = None


@dataclass(frozen=True)
class ErrorReply:
    id: int | None
    code: str
    message: str
    ok: bool = False


@dataclass(frozen=True)
class SamplesEvent:
    t_ns: list[int]
    power_w: list[float]
    event: str = "samples"


@dataclass(frozen=True)
class EndEvent:
    """The end of a stream, or of the session itself when ``reason`` starts with one of ``CLOSING_REASONS``."""

    reason: str
    event: str = "end"


CLOSING_REASONS = ("idle:", "evicted:")  # the daemon closes the session after this event


@dataclass(frozen=True)
class EnergyResult:
    """The ``energy`` reply (and each window of a ``windows`` reply): ``energy_j`` and ``mean_w`` are over the covered
    part (``mean_w`` None when nothing is covered); ``edge_j``/``edge_w`` are the sampling error at the two edges and
    the power change there (see ``buffer.EdgeSampling``)."""

    start_ns: int
    end_ns: int
    energy_j: float
    mean_w: float | None
    n_samples: int
    coverage: float
    gaps_ns: list[list[int]] = field(default_factory=list)
    newest_ns: int | None = None
    waited_s: float = 0.0
    edge_j: float = 0.0
    edge_w: float = 0.0


# -- codec ----------------------------------------------------------------------------------------------------


def encode(message: Any) -> bytes:
    """One message -> one JSON line. Replies flatten their error into ``{"error": {"code", "message"}}``."""
    if isinstance(message, ErrorReply):
        obj: dict[str, Any] = {"id": message.id, "ok": False, "error": {"code": message.code, "message": message.message}}
    elif isinstance(message, Reply):
        obj = {"id": message.id, "ok": True, "result": dict(message.result)}
        if message.rx_ns is not None:
            obj.update(rx_ns=message.rx_ns, tx_ns=message.tx_ns)
    elif isinstance(message, dict):
        obj = message
    else:
        obj = asdict(message)
    return (json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_jsonable) + "\n").encode()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _load(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(TOO_LARGE, f"message of {len(line)} bytes exceeds the {MAX_LINE_BYTES}-byte limit")
    try:
        obj = json.loads(line.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(BAD_JSON, f"message is not one JSON object in UTF-8: {str(exc)[:80]}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_JSON, f"message must be a JSON object, got {type(obj).__name__}")
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _int(obj: Mapping[str, Any], key: str, required: bool = True, default: int | None = None) -> int | None:
    if key not in obj or obj[key] is None:
        if required:
            raise ProtocolError(BAD_REQUEST, f"field {key!r} is required")
        return default
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(BAD_REQUEST, f"field {key!r} must be an integer, got {type(value).__name__}")
    if not -(2**63) <= value < 2**63:
        raise ProtocolError(BAD_REQUEST, f"field {key!r} is out of the 64-bit range")
    return value


def _float(obj: Mapping[str, Any], key: str, default: float | None) -> float | None:
    if key not in obj or obj[key] is None:
        return default
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(BAD_REQUEST, f"field {key!r} must be a finite number, got {value!r:.40}")
    return float(value)


def check_label(label: Any) -> str:
    """Labels go into logs: a short string of letters, digits and ``_-.:/=+@#`` and spaces."""
    if not isinstance(label, str) or not label:
        raise ProtocolError(BAD_REQUEST, "field 'label' must be a non-empty string")
    if len(label) > MAX_LABEL_CHARS:
        raise ProtocolError(BAD_REQUEST, f"label is {len(label)} characters, the limit is {MAX_LABEL_CHARS}")
    bad = sorted(set(label) - LABEL_CHARS)
    if bad:
        raise ProtocolError(BAD_REQUEST, f"label has characters outside [A-Za-z0-9_-.:/=+@# ]: {''.join(bad)[:10]!r}")
    return label


def request_id(line: bytes) -> int | None:
    """Best-effort id of a (possibly invalid) request, so an error reply can still echo it."""
    try:
        obj = json.loads(line.decode("utf-8"))
        value = obj.get("id") if isinstance(obj, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63 else None
    except Exception:  # noqa: BLE001 - any garbage simply has no id
        return None


def decode_hello(line: bytes, expect_role: str) -> Hello:
    """Parse and check the other side's hello; a different protocol or version raises ``ProtocolMismatch``."""
    obj = _load(line)
    if obj.get("ok") is False and isinstance(obj.get("error"), dict):
        err = obj["error"]
        text = f"handshake refused: {err.get('message', err.get('code', '?'))}"
        if err.get("code") in (BUSY, SHUTTING_DOWN):
            raise ProtocolError(str(err["code"]), text)  # for now: try again
        raise ProtocolMismatch(text)
    if obj.get("op") != "hello":
        raise ProtocolError(HELLO_REQUIRED, f"expected a hello first, got op {str(obj.get('op'))[:40]!r}")
    proto, version = obj.get("protocol"), obj.get("version")
    if proto != PROTOCOL_NAME or version != PROTOCOL_VERSION:
        raise ProtocolMismatch(
            f"handshake failed: expected {PROTOCOL_NAME} v{PROTOCOL_VERSION}, got {str(proto)[:40]} v{str(version)[:10]}"
        )
    role = obj.get("role")
    if role != expect_role:
        raise ProtocolError(BAD_REQUEST, f"hello from a {str(role)[:20]!r}, expected a {expect_role!r}")
    software = obj.get("software")
    clock = obj.get("clock")
    return Hello(role=role, software=str(software)[:80] if software is not None else "unknown",
                 clock=str(clock)[:80] if clock is not None else None)


def _check_span(start: int, end: int) -> None:
    if end < start:
        raise ProtocolError(BAD_REQUEST, f"window end_ns {end} is before start_ns {start}")


def _span(obj: Mapping[str, Any]) -> tuple[int, int]:
    start, end = _int(obj, "start_ns"), _int(obj, "end_ns")
    assert start is not None and end is not None
    _check_span(start, end)
    return start, end


def _seconds(obj: Mapping[str, Any], key: str, default: float) -> float:
    """An optional duration field within [0, MAX_WAIT_S] seconds."""
    value = _float(obj, key, default)
    assert value is not None
    if not 0.0 <= value <= MAX_WAIT_S:
        raise ProtocolError(BAD_REQUEST, f"{key} must be within [0, {MAX_WAIT_S}], got {value}")
    return value


def _spans(value: Any) -> list[list[int]]:
    """``spans_ns``: 1..MAX_SPANS lists ``[start_ns, end_ns, inner_ns...]`` of 64-bit integers, each end at or after
    its start, with at most MAX_SPANS inner instants (where power changes inside the window) between them."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SPANS:
        raise ProtocolError(BAD_REQUEST, f"field 'spans_ns' must be a list of 1 to {MAX_SPANS} "
                                         "[start_ns, end_ns, inner_ns...] lists")
    spans = []
    for k, span in enumerate(value):
        if not isinstance(span, list) or not 2 <= len(span) <= 2 + MAX_SPANS:
            raise ProtocolError(BAD_REQUEST, f"spans_ns[{k}] must be [start_ns, end_ns] plus at most {MAX_SPANS} "
                                             "inner instants")
        stamps = [_int({f"spans_ns[{k}]": v}, f"spans_ns[{k}]") for v in span]
        start, end = stamps[0], stamps[1]
        assert start is not None and end is not None
        _check_span(start, end)
        if any(not start <= x <= end for x in stamps[2:]):  # type: ignore[operator]
            raise ProtocolError(BAD_REQUEST, f"spans_ns[{k}]: inner instants must lie within [start_ns, end_ns]")
        spans.append(stamps)
    return spans


def decode_request(line: bytes) -> Request:
    """Parse one request line; anything malformed raises ``ProtocolError`` with a code and a sentence."""
    obj = _load(line)
    op = obj.get("op")
    if not isinstance(op, str):
        raise ProtocolError(BAD_REQUEST, "field 'op' is required and must be a string")
    rid = _int(obj, "id")
    assert rid is not None
    if op == "energy":
        return EnergyRequest(rid, *_span(obj), _seconds(obj, "wait_s", 2.0), _seconds(obj, "edge_slack_s", 0.0))
    if op == "windows":
        return WindowsRequest(rid, _spans(obj.get("spans_ns")), _seconds(obj, "wait_s", 2.0),
                              _seconds(obj, "edge_slack_s", 0.0))
    if op == "samples":
        start, end = _span(obj)
        points = _int(obj, "max_points", required=False)
        points = 1000 if points is None else points
        if not 1 <= points <= MAX_SAMPLE_POINTS:
            raise ProtocolError(BAD_REQUEST, f"max_points must be within [1, {MAX_SAMPLE_POINTS}], got {points}")
        return SamplesRequest(rid, start, end, points)
    if op == "stats":
        return StatsRequest(rid)
    if op == "info":
        return InfoRequest(rid)
    if op == "time":
        return TimeRequest(rid)
    if op == "mark":
        return MarkRequest(rid, check_label(obj.get("label")), _int(obj, "t_ns", required=False))
    if op == "stream":
        max_s = _float(obj, "max_s", None)
        if max_s is not None and max_s <= 0:
            raise ProtocolError(BAD_REQUEST, f"max_s must be positive, got {max_s}")
        return StreamRequest(rid, max_s)
    if op == "hello":
        raise ProtocolError(BAD_REQUEST, "hello was already exchanged on this connection")
    from bench.errors import did_you_mean

    raise ProtocolError(UNKNOWN_OP, did_you_mean("op", op[:40], [o for o in OPS if o != "hello"]))


def decode_reply(line: bytes) -> Reply | ErrorReply | SamplesEvent | EndEvent:
    """Parse one line from the daemon (client side)."""
    obj = _load(line)
    event = obj.get("event")
    if event == "samples":
        return SamplesEvent(list(obj.get("t_ns", [])), list(obj.get("power_w", [])))
    if event == "end":
        return EndEvent(str(obj.get("reason", "")))
    rid = obj.get("id")
    if obj.get("ok") is True and isinstance(obj.get("result"), dict):
        rx, tx = obj.get("rx_ns"), obj.get("tx_ns")
        stamped = isinstance(rx, int) and isinstance(tx, int) and not isinstance(rx, bool) and not isinstance(tx, bool)
        return Reply(rid, obj["result"], rx_ns=rx if stamped else None, tx_ns=tx if stamped else None)
    err = obj.get("error")
    if obj.get("ok") is False and isinstance(err, dict):
        return ErrorReply(rid, str(err.get("code", INTERNAL)), str(err.get("message", "")))
    raise ProtocolError(BAD_JSON, f"reply is neither a result nor an error: {line[:80]!r}")
