"""The ina-serial bridge's wire formats (firmware: scripts/firmware/ina_serial_bridge.ino), decoded in blocks.

Every record is CRC-16/CCITT-FALSE checked (poly 0x1021, init 0xFFFF). Text lines (protocol 1 and 2):

    D,<seq>,<t_us>,<bus_mV>,<current_uA>*<crc>     a sample; seq and t_us are uint32 and wrap
    E,<seq>,<t_us>,<flags>*<crc>                   protocol 2: no valid sample (flags: 1 I2C error, 2 overflow)
    #H,1,<firmware>,<chip>,<device_id>,<shunt_uohm>,<rate_hz>*<crc>
    #H,2,<firmware>,<chip>,<device_id>,<shunt_uohm>,<rate_hz>,<window_us>,<format>,<energy_uj_per_lsb>*<crc>

Protocol 2 stamps ``t_us`` at the middle of the conversion window the sample averages (``window_us`` long, the
conversion age already subtracted) and can send binary blocks instead of D/E lines (``format`` = binary):

    A5 5A | n:u8 | flags:u8 | seq:u32 | n x (t_us:u32, current_uA:i32, bus_mV:u16, status:u8)
          | [energy:u64 when flags & 1] | crc:u16          (little-endian; the CRC covers n .. the last payload byte)

11 bytes a sample instead of about 38, and one ``numpy.frombuffer`` per block instead of a regex match per line:
the daemon's cost at 1 kHz is mostly per-byte and per-line Python work, and this removes most of both.
"""

from __future__ import annotations

import binascii
import re
import struct
from dataclasses import dataclass, field

import numpy as np

CRC_INIT = 0xFFFF
MAGIC = b"\xa5\x5a"
BLOCK_HEAD = struct.Struct("<BBI")  # n, flags, first seq
RECORD = np.dtype([("t_us", "<u4"), ("ua", "<i4"), ("mv", "<u2"), ("status", "u1")])  # packed: 11 bytes
FLAG_ENERGY = 0x01
STATUS_I2C_ERROR, STATUS_OVERFLOW = 0x01, 0x02
MAX_TEXT_LINE = 512
# D,<seq>,<t_us>,<bus_mV>,<current_uA>*<crc16 hex>, optionally followed by \r; one whole line of a block.
SAMPLE_LINE = re.compile(rb"^D,(\d{1,10},\d{1,10},-?\d{1,9},-?\d{1,12})\*([0-9A-Fa-f]{4})\r?$", re.M)
CRC_AFTER_D = binascii.crc_hqx(b"D,", CRC_INIT)  # the CRC state after a sample line's fixed "D," prefix
HEADER_FIELDS = {1: ("firmware", "chip", "device_id", "shunt_uohm", "rate_hz"),
                 2: ("firmware", "chip", "device_id", "shunt_uohm", "rate_hz", "window_us", "format",
                     "energy_uj_per_lsb")}


def crc16(payload: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), what the firmware computes."""
    return binascii.crc_hqx(payload, CRC_INIT)


def frame(payload: bytes) -> bytes:
    return payload + b"*%04X\n" % crc16(payload)


def encode_block(seq: int, records: np.ndarray, energy: int | None = None) -> bytes:
    """The firmware's binary block, byte for byte (the emulator and the benchmarks use it)."""
    body = BLOCK_HEAD.pack(len(records), FLAG_ENERGY if energy is not None else 0, seq % (1 << 32))
    body += records.astype(RECORD).tobytes() + (struct.pack("<Q", energy) if energy is not None else b"")
    return MAGIC + body + struct.pack("<H", crc16(body))


def parse_header(line: bytes) -> dict[str, str] | None:
    """A valid ``#H`` line -> its fields (with ``protocol``); None for anything else. ValueError for a protocol
    this driver does not speak."""
    star = line.rfind(b"*")
    if not line.startswith(b"#H,") or star < 0:
        return None
    try:
        if crc16(line[:star]) != int(line[star + 1:], 16):
            return None
        fields = line[:star].decode("ascii").split(",")
    except (ValueError, UnicodeDecodeError):
        return None
    names = HEADER_FIELDS.get(int(fields[1])) if fields[1].isdigit() else None
    if names is None:
        raise ValueError(f"ina-serial: device speaks protocol {fields[1]}, this driver speaks 1 and 2")
    if len(fields) != 2 + len(names):
        return None
    return {"protocol": fields[1], **dict(zip(names, fields[2:]))}


@dataclass
class Decoded:
    """Records of one chunk, in arrival order, as columns; ``status`` 0 is a valid sample."""

    seq: np.ndarray
    t_us: np.ndarray
    mv: np.ndarray
    ua: np.ndarray
    status: np.ndarray
    headers: list[dict[str, str]] = field(default_factory=list)
    energy: int | None = None  # the last energy accumulator value seen (INA228), raw counts


@dataclass
class BlockRun:
    """Consecutive binary blocks of one chunk: their record bytes are joined and converted by one numpy call each
    column, not one per block (a block is ~30 records; a chunk holds dozens of them)."""

    records: list[bytes] = field(default_factory=list)
    seq0: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    energy: int | None = None  # the last energy accumulator value (INA228), raw counts

    def add(self, records: bytes, seq0: int, count: int) -> None:
        self.records.append(records)
        self.seq0.append(seq0)
        self.counts.append(count)

    def flush_into(self, cols: list[tuple]) -> None:
        if not self.records:
            return
        rec = np.frombuffer(b"".join(self.records), RECORD)
        counts = np.asarray(self.counts, np.int64)
        starts = np.cumsum(counts) - counts  # each block's first index in the run
        seq = (np.repeat(np.asarray(self.seq0, np.int64) - starts, counts) + np.arange(len(rec))) % (1 << 32)
        cols.append((seq, rec["t_us"].astype(np.int64), rec["mv"].astype(np.int64), rec["ua"].astype(np.int64),
                     rec["status"].astype(np.int64)))
        self.records, self.seq0, self.counts = [], [], []


@dataclass
class StreamDecoder:
    """Feeds on raw chunks, keeps a partial record for the next one, and counts what fails framing or CRC."""

    garbage: int = 0
    _tail: bytes = b""
    _resync: bool = False  # after a flush the stream starts mid-record: skip quietly to the first record boundary

    def feed(self, data: bytes) -> Decoded:
        buf = self._tail + data
        if self._resync:
            starts = [x for x in (buf.find(MAGIC), buf.find(b"\n") + 1 if b"\n" in buf else -1) if x >= 0]
            if self._whole_first_line(buf):
                starts.append(0)  # the flush happened to end on a record boundary: keep that record
            if not starts:
                self._tail = buf[-1:]  # the first byte of a magic may end this chunk
                return self._join([], [], None)
            buf, self._resync = buf[min(starts):], False
        cols: list[tuple] = []
        headers: list[dict[str, str]] = []
        run = BlockRun()  # consecutive binary blocks, decoded together
        i, n = 0, len(buf)
        while i < n:
            if buf.startswith(MAGIC, i):
                size = self._block(buf, i, run)
                if size is None:
                    break  # incomplete: wait for the rest
                i += size
                continue
            run.flush_into(cols)
            nl = buf.find(b"\n", i)
            magic = buf.find(MAGIC, i)
            if buf[i:i + 1] in (b"D", b"E", b"#") and nl >= 0 and (magic < 0 or nl < magic):
                j = self._text_run(buf, i, nl, magic)
                cols.append(self._text_lines(buf[i:j], headers))
                i = j
                continue
            if nl < 0 and magic < 0:
                if n - i > MAX_TEXT_LINE:  # no record boundary in sight: drop it
                    self.garbage += 1
                    i = n
                break
            stop = min(x for x in (nl + 1 if nl >= 0 else -1, magic) if x >= 0)
            if buf[i:stop].strip():
                self.garbage += 1
            i = stop
        run.flush_into(cols)
        self._tail = buf[i:]
        return self._join(cols, headers, run.energy)

    @staticmethod
    def _whole_first_line(buf: bytes) -> bool:
        """Whether ``buf`` starts with a complete, CRC-valid sample line (not the tail of one cut by a flush)."""
        m = SAMPLE_LINE.match(buf, 0, buf.find(b"\n"))
        return m is not None and binascii.crc_hqx(m.group(1), CRC_AFTER_D) == int(m.group(2), 16)

    @staticmethod
    def _text_run(buf: bytes, i: int, nl: int, magic: int) -> int:
        """End of the run of complete text lines starting at ``i`` (up to a binary block or a partial line)."""
        end = buf.rfind(b"\n", i, magic if magic >= 0 else len(buf))
        return max(end, nl) + 1

    def _block(self, buf: bytes, i: int, run: "BlockRun") -> int | None:
        """Check the block at ``i`` and add it to ``run``; its size (2 for a corrupt one: resynchronise on the next
        magic), or None when it is not complete yet."""
        if len(buf) - i < 2 + BLOCK_HEAD.size:
            return None
        count, flags, seq0 = BLOCK_HEAD.unpack_from(buf, i + 2)
        size = 2 + BLOCK_HEAD.size + count * RECORD.itemsize + (8 if flags & FLAG_ENERGY else 0) + 2
        if len(buf) - i < size:
            return None
        body = buf[i + 2:i + size - 2]
        if count == 0 or crc16(body) != struct.unpack_from("<H", buf, i + size - 2)[0]:
            self.garbage += 1
            return 2
        records_end = BLOCK_HEAD.size + count * RECORD.itemsize
        run.add(body[BLOCK_HEAD.size:records_end], seq0, count)
        if flags & FLAG_ENERGY:
            run.energy = struct.unpack_from("<Q", body, records_end)[0]
        return size

    def _text_lines(self, block: bytes, headers: list) -> tuple:
        """A run of whole lines. The usual run (D lines only) costs one regex pass, one CRC per line and one numpy
        conversion; a run holding anything else (a header, an E line, junk) is walked line by line."""
        matches = SAMPLE_LINE.findall(block)
        if len(matches) != block.count(b"\n"):
            return self._line_by_line(block, headers)
        good = [numbers for numbers, crc in matches if binascii.crc_hqx(numbers, CRC_AFTER_D) == int(crc, 16)]
        self.garbage += len(matches) - len(good)
        d = np.fromstring(b",".join(good), dtype=np.int64, sep=",").reshape(-1, 4)  # text mode: not deprecated
        return d[:, 0], d[:, 1], d[:, 2], d[:, 3], np.zeros(len(d), np.int64)

    def _line_by_line(self, block: bytes, headers: list) -> tuple:
        rows = [row for line in block.split(b"\n") if line.strip()
                for row in [self._line(line.rstrip(b"\r"), headers)] if row is not None]
        a = np.array(rows, np.int64).reshape(-1, 5)
        return tuple(a[:, k] for k in range(5))

    def _line(self, line: bytes, headers: list) -> tuple[int, ...] | None:
        """One text line -> (seq, t_us, mV, uA, status), or None for a header (kept) or garbage (counted)."""
        star = line.rfind(b"*")
        try:
            ok = star > 0 and crc16(line[:star]) == int(line[star + 1:], 16)
        except ValueError:
            ok = False
        fields = line[:star].split(b",") if ok else []
        if ok and fields[0] == b"D" and len(fields) == 5:
            return int(fields[1]), int(fields[2]), int(fields[3]), int(fields[4]), 0
        if ok and fields[0] == b"E" and len(fields) == 4:
            return int(fields[1]), int(fields[2]), 0, 0, int(fields[3]) or STATUS_I2C_ERROR
        header = parse_header(line) if line.startswith(b"#H") else None
        if header is not None:
            headers.append(header)
        else:
            self.garbage += 1
        return None

    @staticmethod
    def _join(cols: list[tuple], headers: list, energy: int | None) -> Decoded:
        if not cols:
            empty = np.empty(0, np.int64)
            return Decoded(empty, empty, empty, empty, empty, headers, energy)
        return Decoded(*(np.concatenate(c) for c in zip(*cols)), headers=headers, energy=energy)

    def reset(self, resync: bool = False) -> None:
        self._tail = b""
        self._resync = resync
