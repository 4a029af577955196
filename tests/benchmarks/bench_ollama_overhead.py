"""Harness cost: per answer (OllamaBackend.generate vs a bare ``ollama.Client().generate``) and per streamed chunk.

The test server answers a scripted reply (no LLM), so the server's cost is tiny and constant and the difference
is the harness: streaming parse, host stamps, deadline-bounded sockets, tenacity, Completion building. The server
runs in its own process (in-process, its threads would compete with the client for the GIL and distort the
numbers). Calls are interleaved so drift hits all three alike. Target: overhead <= 5 ms per answer and <= 1 % of an
answer.

Per chunk: while an answer streams on the Pi (~5 tokens/s) the runner's only work is reading chunks, one socket
wake-up each. A paced server (one chunk every PACE_S) makes every chunk its own wake-up, as there; the CPU time of
this process (process_time) per chunk is measured for the backend and for the official client streaming the same
answer. Target: <= 0.1 % of a core at 5 chunks/s, i.e. <= 200 us a chunk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import ollama  # noqa: E402

from bench.backends.ollama import OllamaBackend  # noqa: E402
from bench.catalog import models  # noqa: E402

N = 300
PACE_S = 0.02  # 50 chunks/s: each chunk arrives alone, as at a Pi's 5 tokens/s, in a fifth of the time
PACED_CHUNKS = 100
PI_TOKENS_PER_S = 5.0
CHUNK_TARGET_PCT = 0.1
REPLY = " ".join(f"w{i}" for i in range(20)) + " <ANS>42</ANS>"  # 21 chunks, like a short answer
PROMPT = "What is 2 + 3? Print only the answer surrounded by <ANS> and </ANS>."
PI_ANSWER_S = 1.0  # a short answer on the Pi 4 (the paper's mean latencies are seconds to minutes)


@contextlib.contextmanager
def server_process(reply: str = REPLY, delay_s: float = 0.0):
    """``python tests/ollama_server.py --scripted REPLY`` on a free port; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "ollama_server.py"), "--port", str(port),
                             "--scripted", reply, "--script-delay", str(delay_s)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"test server did not start: {line!r}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def per_chunk_cpu(entry) -> None:  # noqa: ANN001 - a ModelEntry
    """CPU time of this process per streamed chunk, each chunk its own wake-up."""
    reply = " ".join(f"w{i}" for i in range(PACED_CHUNKS))
    with server_process(reply, PACE_S) as host:
        bare, ours = ollama.Client(host=host), OllamaBackend(host, warmup=False)

        def bare_once() -> None:
            assert "".join(c.response or "" for c in bare.generate(model=entry.tag, prompt=PROMPT, stream=True,
                                                                   options={"temperature": 0})) == reply

        def ours_once() -> None:
            assert ours.generate(entry, PROMPT, {}, timeout_s=1200).text == reply

        fns = {"ours": ours_once, "bare_stream": bare_once}
        cpu: dict[str, list[float]] = {k: [] for k in fns}
        for fn in fns.values():
            fn()
        for _ in range(3):
            for name, fn in fns.items():
                c0 = time.process_time()
                fn()
                cpu[name].append((time.process_time() - c0) / PACED_CHUNKS * 1e6)
        bare.close()
        ours.close()
    print(f"per streamed chunk, one chunk every {PACE_S * 1e3:g} ms, {PACED_CHUNKS} chunks an answer, 3 answers:")
    for name, us in cpu.items():
        pct = statistics.median(us) * PI_TOKENS_PER_S / 1e4
        print(f"  {name:12} {statistics.median(us):6.1f} us CPU a chunk (runs {', '.join(f'{x:.0f}' for x in us)}) "
              f"= {pct:.3f} % of a core at {PI_TOKENS_PER_S:g} tokens/s")
    ours_pct = statistics.median(cpu["ours"]) * PI_TOKENS_PER_S / 1e4
    print(f"ratio ours / official client: {statistics.median(cpu['ours']) / statistics.median(cpu['bare_stream']):.2f}")
    print(f"target (<= {CHUNK_TARGET_PCT:g} % of a core at {PI_TOKENS_PER_S:g} tokens/s): "
          f"{'met' if ours_pct <= CHUNK_TARGET_PCT else 'NOT met'}")


def main() -> None:
    entry = dataclasses.replace(models()["smollm2:135m-instruct-q4_1"], backend="ollama")
    per_chunk_cpu(entry)
    with server_process() as host:
        bare = ollama.Client(host=host)
        ours = OllamaBackend(host)

        def bare_once() -> None:
            r = bare.generate(model=entry.tag, prompt=PROMPT, options={"temperature": 0})  # the paper's call
            assert r.response == REPLY

        def bare_stream_once() -> None:
            text = "".join(c.response or "" for c in bare.generate(model=entry.tag, prompt=PROMPT,
                                                                   options={"temperature": 0}, stream=True))
            assert text == REPLY

        def ours_once() -> None:
            assert ours.generate(entry, PROMPT, {}, timeout_s=1200).text == REPLY

        runs: dict[str, list[float]] = {"bare": [], "bare_stream": [], "ours": []}
        fns = {"bare": bare_once, "bare_stream": bare_stream_once, "ours": ours_once}
        for _ in range(20):  # warm connections and code paths
            for fn in fns.values():
                fn()
        for _ in range(N):
            for name, fn in fns.items():
                t0 = time.perf_counter_ns()
                fn()
                runs[name].append((time.perf_counter_ns() - t0) / 1e6)
        bare.close()
        ours.close()

    med = {k: statistics.median(v) for k, v in runs.items()}
    over_stream = med["ours"] - med["bare_stream"]
    over_bare = med["ours"] - med["bare"]
    print(f"answers per variant: {N}; scripted reply of {len(REPLY.split())} chunks")
    for k in ("bare", "bare_stream", "ours"):
        print(f"  {k:12} median {med[k]:7.3f} ms   p90 {statistics.quantiles(runs[k], n=10)[-1]:7.3f} ms")
    print(f"overhead vs bare streaming call:     {over_stream:+.3f} ms  (ratio {med['ours'] / med['bare_stream']:.3f})")
    print(f"overhead vs bare non-streaming call: {over_bare:+.3f} ms  (ratio {med['ours'] / med['bare']:.3f})")
    share = max(over_bare, 0) / 1e3 / PI_ANSWER_S * 100
    print(f"overhead as share of a {PI_ANSWER_S:g} s Pi answer: {share:.3f} %")
    ok = over_bare <= 5.0 and share <= 1.0
    print(f"target (<= 5 ms and <= 1 % of an answer): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
