"""The streamed body reader: HTTP framing decoded to the RFC, and the kernel's arrival stamps on gathered reads.

Framing vectors are from RFC 9112 (HTTP/1.1) section 7.1 and its grammar (chunk-ext, last-chunk of one or more
zeros, trailer-section) and the worked example of Wikipedia's "Chunked transfer encoding" article. Stamps are
checked against a real server on real sockets: the Ollama test server records CLOCK_MONOTONIC after each line
leaves, and CLOCK_MONOTONIC is one clock for every process on the host.
"""

from __future__ import annotations

import dataclasses
import socket
import time

import pytest

from bench.backends import http_body
from bench.backends.http_body import BodyError, Chunked, Sized, arrival_ns
from bench.backends.ollama import OllamaBackend
from bench.backends.ollama_http import OllamaHTTP
from bench.backends.stream import Arrival
from bench.catalog import models

from ollama_server import OllamaTestServer

DEMO = dataclasses.replace(models()["smollm2:135m-instruct-q4_1"], backend="ollama")
WIKIPEDIA = b"4\r\nWiki\r\n7\r\npedia i\r\nB\r\nn \r\nchunks.\r\n0\r\n\r\n"  # payload "Wikipedia in \r\nchunks."
MS = 1_000_000


def decode(raw: bytes, step: int | None = None) -> tuple[bytes, Chunked]:
    body = Chunked()
    step = step or len(raw)
    out = b"".join(body.feed(raw[i:i + step]) for i in range(0, len(raw), step))
    return out, body


@pytest.mark.parametrize("step", [None, 1, 2, 3, 7])
def test_chunked_decodes_the_same_however_the_bytes_are_split(step):
    out, body = decode(WIKIPEDIA, step)
    assert out == b"Wikipedia in \r\nchunks." and body.done and body.extra == b""


def test_chunk_extensions_a_long_last_chunk_trailers_and_what_follows_the_body():
    raw = b"5 ; name=value;flag\r\nhello\r\n000\r\nExpires: never\r\nX-Other: 1\r\n\r\nGET /next"
    out, body = decode(raw)
    assert out == b"hello" and body.done and body.extra == b"GET /next"


@pytest.mark.parametrize("raw, says", [
    (b"zz\r\nab\r\n", "bad chunk-size line"),
    (b"0x4\r\nWiki\r\n0\r\n\r\n", "bad chunk-size line"),
    (b"-4\r\nWiki\r\n0\r\n\r\n", "bad chunk-size line"),
    (b"\r\n", "bad chunk-size line"),
    (b"4\r\nWikiXY\r\n0\r\n\r\n", "closing CRLF"),
    (b"4" * 5000, "no line end within 4096 bytes"),
])
def test_broken_framing_is_one_line_naming_it(raw, says):
    with pytest.raises(BodyError, match=says) as err:
        decode(raw)
    assert "\n" not in str(err.value)


def test_a_body_cut_short_is_an_error_not_an_end():
    body = Chunked()
    body.feed(WIKIPEDIA[:20])
    with pytest.raises(BodyError, match="closed before the chunked body ended"):
        body.at_eof()
    sized = Sized(10)
    assert sized.feed(b"abc") == b"abc" and not sized.done
    with pytest.raises(BodyError, match="7 bytes before the body's Content-Length"):
        sized.at_eof()
    sized = Sized(3)
    assert sized.feed(b"abcdef") == b"abc" and sized.done and sized.extra == b"def"


def test_a_wall_clock_stamp_is_converted_to_the_monotonic_clock_and_never_after_its_read():
    now = time.monotonic_ns()
    wall = time.clock_gettime_ns(time.CLOCK_REALTIME) - 5 * MS  # arrived 5 ms ago
    raw = (wall // 10**9).to_bytes(8, "little", signed=True) + (wall % 10**9).to_bytes(8, "little", signed=True)
    got = arrival_ns([(socket.SOL_SOCKET, http_body.SO_TIMESTAMPNS, raw)], now)
    assert abs(got - (now - 5 * MS)) < MS
    future = wall + 10**9
    raw = (future // 10**9).to_bytes(8, "little", signed=True) + (future % 10**9).to_bytes(8, "little", signed=True)
    assert arrival_ns([(socket.SOL_SOCKET, http_body.SO_TIMESTAMPNS, raw)], now) == now
    assert arrival_ns([], now) is None


def generate_body(prompt: str = "hi") -> dict:
    return {"model": DEMO.tag, "prompt": prompt, "stream": True, "options": {"temperature": 0}}


def test_a_line_left_waiting_in_the_socket_is_stamped_when_it_arrived_not_when_it_was_read():
    """The consumer dawdles 300 ms before each read; the kernel's stamps still match the server's send times."""
    with OllamaTestServer(scripted_reply="a b c d", token_delay_s=0.05) as srv:
        http = OllamaHTTP(srv.host)
        stamps, lines = [], []
        for item in http.stream("/api/generate", generate_body(), time.monotonic_ns() + 30 * 10**9):
            if item.__class__ is Arrival:
                stamps.append(int(item))
                time.sleep(0.3)
            else:
                lines.append(item)
        sent = list(srv.chunk_sent_ns)
        http.close()
    assert lines[-1]["done"] and len(sent) == len(lines)
    # the last stamp is the stream's end (the done line, then the chunked terminator right behind it)
    assert abs(stamps[-1] - sent[-1]) < 20 * MS, (stamps[-1] - sent[-1]) / MS
    assert all(b >= a for a, b in zip(stamps, stamps[1:]))  # monotone


def test_once_text_flows_reads_gather_and_the_answer_keeps_exact_stamps():
    words = 40  # 41 lines (40 words and the done line) over ~2 s
    reply = " ".join(f"w{i}" for i in range(words))
    with OllamaTestServer(scripted_reply=reply, token_delay_s=0.05) as srv:
        http = OllamaHTTP(srv.host)
        items = list(http.stream("/api/generate", generate_body(), time.monotonic_ns() + 30 * 10**9))
        backend = OllamaBackend(srv.host, warmup=False)
        del srv.chunk_sent_ns[:]
        c = backend.generate(DEMO, "hi", {}, timeout_s=30)
        sent = list(srv.chunk_sent_ns)
        backend.close()
        http.close()
    reads = sum(1 for i in items if i.__class__ is Arrival)
    lines = len(items) - reads
    # a gathered read waits for GATHER_BYTES (about nine of these ~110-byte lines) or GATHER_WAIT_S (never, here)
    assert lines == words + 1 and reads <= lines // 4, (reads, lines)
    assert c.complete and c.text == reply
    assert abs(c.t_first_token_ns - sent[0]) < 20 * MS, (c.t_first_token_ns - sent[0]) / MS
    assert abs(c.t_last_token_ns - sent[-1]) < 20 * MS, (c.t_last_token_ns - sent[-1]) / MS


def test_the_end_of_an_answer_is_read_at_once_though_its_last_lines_are_below_the_low_water_mark():
    """Fewer than GATHER_BYTES follow the last gathered read; the server's close behind the stream wakes the reader,
    so generate() returns right after the last byte, not GATHER_WAIT_S (2 s) later."""
    with OllamaTestServer(scripted_reply=" ".join(f"w{i}" for i in range(20)), token_delay_s=0.05) as srv:
        backend = OllamaBackend(srv.host, warmup=False)
        c = backend.generate(DEMO, "hi", {}, timeout_s=30)
        returned = time.monotonic_ns()
        backend.close()
    assert c.complete and (returned - c.t_last_token_ns) < 300 * MS, (returned - c.t_last_token_ns) / MS


def test_without_kernel_stamps_every_line_is_read_at_once_and_stamped_at_its_read(monkeypatch):
    monkeypatch.setattr(http_body, "enable_arrival_stamps", lambda sock: False)
    with OllamaTestServer(scripted_reply="a b c d e f", token_delay_s=0.05) as srv:
        backend = OllamaBackend(srv.host, warmup=False)
        c = backend.generate(DEMO, "hi", {}, timeout_s=30)
        again = backend.generate(DEMO, "hi", {}, timeout_s=30)
        sent = list(srv.chunk_sent_ns)
        backend.close()
    assert c.complete and again.complete and c.text == again.text == "a b c d e f"
    assert abs(c.t_last_token_ns - sent[6]) < 20 * MS
