"""What a SCPI reply means: an explicit item list, and the values that are not measurements.

The reply format is the list of items the query returns, in order: ``p`` (watts), ``v`` (volts), ``i`` (amps) and
``-`` (any other value, ignored). ``p`` is one power reading; ``v,i`` is a product; ``v,i,p`` (Rigol DP800
``MEAS:ALL?``) takes P at its index; ``u,i,p`` style Yokogawa ``:NUM:NORM:VAL?`` item lists are written the same way.
A reply with a different number of values is garbage, never guessed at.

SCPI-99 (vol. 1, 7.2.1.5) reserves 9.9E37 for infinity (-9.9E37 minus infinity) and 9.91E37 for not-a-number; an
instrument answers them on overload or when it has no valid reading (Keysight N6781A does). Vendors have their own:
Hioki PW3335 answers +999.99E+9 (over range), +888.88E+9 (peak over) and +777.77E+9 (no valid data), either sign.
Such a reply is an ``Overload``: counted, and a gap in the data, never a sample.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

SCPI_SENTINELS = (9.9e37, 9.91e37)
PRESETS = {"hioki": (999.99e9, 888.88e9, 777.77e9)}
ITEMS = ("p", "v", "i", "-")
NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
NOT_A_NUMBER = re.compile(rb"[-+]?(?:nan|inf|infinity)", re.I)


class Overload(ValueError):
    """The instrument answered a reserved value (infinity, NaN, a vendor's over-range code): no reading."""


@dataclass(frozen=True)
class ReplyFormat:
    items: tuple[str, ...]
    sentinels: tuple[float, ...]

    @classmethod
    def parse(cls, items: str, sentinels: str) -> "ReplyFormat":
        """``"v,i,p"`` and ``"hioki,1e30"`` -> a format; ValueError with the reason (the caller names the option)."""
        names = tuple(x.strip().lower() for x in items.split(","))
        if not names or any(n not in ITEMS for n in names):
            raise ValueError(f"items must be among {', '.join(ITEMS)}, comma-separated (e.g. p; v,i; v,i,p; -,-,p)")
        if names.count("p") > 1 or names.count("v") > 1 or names.count("i") > 1:
            raise ValueError("each of p, v, i may appear once")
        if "p" not in names and not {"v", "i"} <= set(names):
            raise ValueError("needs p, or both v and i")
        values: list[float] = list(SCPI_SENTINELS)
        for word in filter(None, (w.strip().lower() for w in sentinels.split(","))):
            if word in PRESETS:
                values.extend(PRESETS[word])
            else:
                try:
                    values.append(abs(float(word)))
                except ValueError:
                    raise ValueError(f"sentinel {word!r} is neither a number nor one of {', '.join(PRESETS)}") from None
        return cls(names, tuple(values))

    def is_sentinel(self, value: float) -> bool:
        return not math.isfinite(value) or any(math.isclose(abs(value), s, rel_tol=1e-6) for s in self.sentinels)

    def watts(self, reply: bytes) -> float:
        """The power in one reply; ``Overload`` for a reserved value, ValueError for anything else that is wrong."""
        parts = [p.strip() for p in re.split(rb"[;,]", reply.strip())]
        if len(parts) != len(self.items):
            raise ValueError(f"reply {reply[:60]!r} has {len(parts)} values, the format {','.join(self.items)} "
                             f"expects {len(self.items)}")
        values = {}
        for item, part in zip(self.items, parts):
            if NOT_A_NUMBER.fullmatch(part):
                raise Overload(f"reply {reply[:60]!r}: {item} is {part.decode()}")
            if not NUMBER.fullmatch(part):
                raise ValueError(f"reply {reply[:60]!r}: {part[:20]!r} is not a number")
            value = float(part)
            if item != "-" and self.is_sentinel(value):
                raise Overload(f"reply {reply[:60]!r}: {item}={part.decode()} is a reserved (overload/invalid) value")
            values[item] = value
        return values["p"] if "p" in values else values["v"] * values["i"]
