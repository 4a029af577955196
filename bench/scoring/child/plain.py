"""Plain data across the process boundary: a tagged JSON form that keeps what ``==`` in a test can tell apart.

JSON already keeps None, bool, int, float, str and lists apart; objects carry one tag each: ``{"tuple": [...]}``,
``{"dict": [[key, value], ...]}``, ``{"set": [...]}``, ``{"frozenset": [...]}``, ``{"bytes": "<hex>"}``,
``{"float": "nan" | "inf" | "-inf"}``, ``{"complex": [re, im]}``. The judge only ever compares what
`decode` builds, so an object with its own ``__eq__`` or a patched builtin in the candidate cannot reach a test.
"""

from __future__ import annotations

import json
import math

MAX_DEPTH = 64


class NotPlain(ValueError):
    """A value (or a message) that is not plain data; the message names the type, never the value."""


def _float(value: float) -> object:
    if math.isfinite(value):
        return value
    return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _scalar(value: object) -> object:
    """Subclasses of the builtin scalars and numpy scalars as the builtin value they stand for."""
    kind = type(value)
    for base in (int, float, complex, str, bytes):
        if isinstance(value, base):  # its own __eq__ is dropped: the judge compares the builtin value
            return base(value)
    if kind.__module__ == "numpy" and callable(getattr(value, "item", None)):
        item = value.item()
        if type(item) in (bool, int, float, complex, str, bytes):
            return item
    raise NotPlain(f"{kind.__module__}.{kind.__qualname__}"[:80])


def to_tagged(value: object, depth: int = 0) -> object:
    """``value`` as tagged JSON data; raises NotPlain for anything else (or nesting deeper than MAX_DEPTH)."""
    if depth > MAX_DEPTH:
        raise NotPlain("nesting deeper than %d" % MAX_DEPTH)
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return _float(value)
    if kind is complex:
        return {"complex": [_float(value.real), _float(value.imag)]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is list:
        return [to_tagged(v, depth + 1) for v in value]
    if kind is tuple:
        return {"tuple": [to_tagged(v, depth + 1) for v in value]}
    if kind in (set, frozenset):
        return {kind.__name__: [to_tagged(v, depth + 1) for v in value]}
    if kind is dict:
        return {"dict": [[to_tagged(k, depth + 1), to_tagged(v, depth + 1)] for k, v in value.items()]}
    return to_tagged(_scalar(value), depth + 1)


def _number(value: object) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    if type(value) is dict and set(value) == {"float"} and value["float"] in ("nan", "inf", "-inf"):
        return float(value["float"])
    raise NotPlain("malformed number")


def from_tagged(data: object, depth: int = 0) -> object:
    """The plain value of tagged JSON data; raises NotPlain on anything outside the grammar above."""
    if depth > MAX_DEPTH:
        raise NotPlain("nesting deeper than %d" % MAX_DEPTH)
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if kind is list:
        return [from_tagged(v, depth + 1) for v in data]
    if kind is not dict or len(data) != 1:
        raise NotPlain("malformed tagged value")
    (tag, body), = data.items()
    if tag == "float":
        return _number(data)
    if tag == "bytes" and type(body) is str:
        try:
            return bytes.fromhex(body)
        except ValueError:
            raise NotPlain("malformed bytes") from None
    if tag == "complex" and type(body) is list and len(body) == 2:
        return complex(_number(body[0]), _number(body[1]))
    if type(body) is not list:
        raise NotPlain("malformed tagged value")
    items = [from_tagged(v, depth + 1) for v in body] if tag != "dict" else None
    try:
        if tag == "tuple":
            return tuple(items)
        if tag == "set":
            return set(items)
        if tag == "frozenset":
            return frozenset(items)
        if tag == "dict" and all(type(pair) is list and len(pair) == 2 for pair in body):
            return {from_tagged(k, depth + 1): from_tagged(v, depth + 1) for k, v in body}
    except TypeError:  # an unhashable set element or dict key
        raise NotPlain("unhashable key or set element") from None
    raise NotPlain("unknown tag")


def dumps(value: object) -> bytes:
    """One protocol line for a message whose fields are already tagged (no NaN literals: they are tags)."""
    return json.dumps(value, allow_nan=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _refuse_constant(name: str) -> float:
    raise NotPlain("NaN/Infinity literal")


def loads(line: bytes) -> object:
    """A protocol line back into JSON data; raises NotPlain when it is not JSON."""
    try:
        return json.loads(line.decode("utf-8"), parse_constant=_refuse_constant)
    except NotPlain:
        raise
    except (ValueError, RecursionError):  # includes UnicodeDecodeError and int digit limits
        raise NotPlain("not JSON") from None
