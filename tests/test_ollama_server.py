"""The Ollama test server's wire behaviour, checked against what Ollama 0.6.0 sends (sources next to each fact), so
the backend tests run against the release's behaviour and not against an invented one."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx

from ollama_server import OllamaTestServer

TAG = "smollm2:135m-instruct-q4_1"


def raw_generate(host: str, body: dict) -> tuple[float, bytes]:
    """(seconds until the first byte of the reply, the whole reply) over a plain socket."""
    port = int(host.rsplit(":", 1)[1])
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(payload), payload))
        t0 = time.monotonic()
        first = s.recv(1)
        waited = time.monotonic() - t0
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    return waited, first + rest


def test_the_status_line_comes_with_the_first_chunk_not_before():
    """server/routes.go streamResponse: gin's c.Stream writes headers on the first write, after the prefill."""
    with OllamaTestServer(scripted_reply="ok", prefill_s_per_token=0.02) as srv:
        waited, reply = raw_generate(srv.host, {"model": TAG, "prompt": "one two three four five"})
    assert reply.startswith(b"HTTP/1.1 200") and b"application/x-ndjson" in reply
    assert waited > 0.02 * 20  # the templated prompt is over 20 tokens, none cached on a fresh runner


def test_chunks_are_gos_generate_response_with_zero_fields_left_out():
    """api/types.go GenerateResponse: model, created_at, response, done, then omitempty fields; Metrics are
    omitempty, durations in ns; runner.go reports prompt/eval durations in whole ms."""
    with OllamaTestServer(scripted_reply="a b c", token_delay_s=0.002) as srv:
        lines = [json.loads(x) for x in httpx.post(f"{srv.host}/api/generate", json={"model": TAG, "prompt": "hi"}
                                                   ).text.splitlines()]
    *pieces, done = lines
    assert [list(p) for p in pieces] == [["model", "created_at", "response", "done"]] * 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", pieces[0]["created_at"])
    assert list(done)[:6] == ["model", "created_at", "response", "done", "done_reason", "context"]
    assert done["response"] == "" and done["done"] is True and done["load_duration"] > 0
    assert done["eval_count"] == 4  # three words and the sampled end-of-generation token
    assert done["eval_duration"] % 1_000_000 == 0 and done["total_duration"] > done["load_duration"]


def test_show_has_no_capabilities_in_0_6_0():
    """api/types.go ShowResponse at v0.6.0 has no ``capabilities`` (it came in a later release)."""
    with OllamaTestServer() as srv:
        show = httpx.post(f"{srv.host}/api/show", json={"model": TAG}).json()
    assert "capabilities" not in show and show["details"]["quantization_level"] == "Q4_1"
    assert {"modelfile", "parameters", "template", "details", "model_info", "modified_at"} <= set(show)


def test_an_empty_prompt_loads_and_keep_alive_zero_unloads():
    """routes.go GenerateHandler: an empty prompt is a load ("load"); with keep_alive 0 an unload ("unload")."""
    with OllamaTestServer() as srv:
        load = httpx.post(f"{srv.host}/api/generate", json={"model": TAG, "prompt": ""}).json()
        assert load["done_reason"] == "load" and [m["model"] for m in httpx.get(f"{srv.host}/api/ps").json()["models"]]
        unload = httpx.post(f"{srv.host}/api/generate", json={"model": TAG, "prompt": "", "keep_alive": 0}).json()
        assert unload["done_reason"] == "unload" and httpx.get(f"{srv.host}/api/ps").json()["models"] == []


def test_a_non_streaming_looping_answer_is_the_text_so_far_and_not_done():
    """routes.go: with stream false the reply is the last response with all the text; the repeat guard left it
    without a done chunk, so ``done`` is false and no counters come back (what the paper's call saw)."""
    with OllamaTestServer(scripted_reply="x " * 40) as srv:
        r = httpx.post(f"{srv.host}/api/generate", json={"model": TAG, "prompt": "hi", "stream": False}).json()
    assert r["done"] is False and r["response"] == "x " * 31 and "eval_count" not in r
