"""Harness overhead per answer: OllamaBackend.generate vs a bare ``ollama.Client().generate`` on the same server.

The test server answers a scripted reply (no LLM), so the server's cost is tiny and constant and the difference
is the harness: streaming parse, host stamps, deadline-clamped sockets, tenacity, Completion building. The server
runs in its own process (in-process, its threads would compete with the client for the GIL and distort the
numbers). Calls are interleaved so drift hits all three alike. Target: overhead <= 5 ms per answer and <= 1 % of an answer.
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
REPLY = " ".join(f"w{i}" for i in range(20)) + " <ANS>42</ANS>"  # 21 chunks, like a short answer
PROMPT = "What is 2 + 3? Print only the answer surrounded by <ANS> and </ANS>."
PI_ANSWER_S = 1.0  # a short answer on the Pi 4 (the paper's mean latencies are seconds to minutes)


@contextlib.contextmanager
def server_process():
    """``python tests/ollama_server.py --scripted REPLY`` on a free port; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "ollama_server.py"), "--port", str(port),
                             "--scripted", REPLY], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"test server did not start: {line!r}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    entry = dataclasses.replace(models()["smollm2:135m-instruct-q4_1"], backend="ollama")
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
