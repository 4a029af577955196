"""OllamaBackend: integration (test server on real llama.cpp, or a real Ollama via OLLAMA_HOST) and faults."""

from __future__ import annotations

import dataclasses
import socket
import time

import httpx
import pytest

from bench.backends import AnswerFailed, AnswerTimeout, ModelSkipped, get_backend
from bench.backends.ollama import OllamaBackend
from bench.catalog import models
from bench.errors import BackendError, DigestMismatch

DEMO = dataclasses.replace(models()["smollm2:135m-instruct-q4_1"], backend="ollama")
PROMPT = "What is 2 + 3? Print only the answer surrounded by <ANS> and </ANS>."


def fast_backend(host: str, **kw) -> OllamaBackend:
    kw.setdefault("retries", 2)
    kw.setdefault("retry_wait_s", 0.01)
    kw.setdefault("warmup_tokens", 4)
    return OllamaBackend(host, **kw)


# -- integration: the same tests against the test server or a real Ollama --------------------------------------


def test_generate_streams_timings_and_stamps(ollama_target):
    b = fast_backend(ollama_target.host)
    print(f"using {ollama_target.label}")
    t0 = time.monotonic_ns()
    c = b.generate(ollama_target.model, PROMPT, {"num_predict": 24, "seed": 1, "num_ctx": 2048}, timeout_s=120)
    assert c.text.strip()
    assert t0 <= c.t_send_ns < c.t_first_token_ns <= c.t_last_token_ns <= time.monotonic_ns()
    assert c.eval_count and 0 < c.eval_count <= 24
    assert c.prompt_eval_count and c.prompt_eval_count > 0
    assert c.eval_duration_ns and c.eval_duration_ns > 0
    assert c.total_duration_ns and c.total_duration_ns > 0
    assert c.done_reason in ("stop", "length")
    b.close()


def test_greedy_answers_repeat(ollama_target):
    b = fast_backend(ollama_target.host)
    a1 = b.generate(ollama_target.model, PROMPT, {"num_predict": 16}, timeout_s=120).text
    a2 = b.generate(ollama_target.model, PROMPT, {"num_predict": 16}, timeout_s=120).text
    assert a1 == a2  # temperature 0 by default


def test_prepare_records_server_facts_and_warmup(ollama_target):
    b = fast_backend(ollama_target.host)
    facts = b.prepare(ollama_target.model)
    assert facts["digest_ok"] is True and facts["digest_override"] is False
    assert facts["digest"] == ollama_target.model.digest
    assert facts["server_version"]
    assert facts["quantization_level"] and facts["parameter_size"]
    assert isinstance(facts["context_length"], int) and facts["context_length"] > 0
    assert facts["warmup"]["eval_count"] and facts["warmup"]["eval_count"] <= 4
    assert facts["ram_check"] in ("fits", "already loaded") or facts["ram_check"].startswith("unknown")
    d = b.describe()
    assert d["host"] == ollama_target.host.rstrip("/") and d["client_version"] and d["server_version"]


def test_digest_mismatch_refuses_with_both_digests(ollama_target):
    wrong = "f" * 64
    b = fast_backend(ollama_target.host, warmup=False)
    with pytest.raises(DigestMismatch) as err:
        b.prepare(dataclasses.replace(ollama_target.model, digest=wrong))
    msg = str(err.value)
    assert "\n" not in msg and wrong in msg and ollama_target.model.digest in msg


def test_digest_override_is_recorded(ollama_target):
    b = fast_backend(ollama_target.host, warmup=False, allow_digest_override=True)
    facts = b.prepare(dataclasses.replace(ollama_target.model, digest="f" * 64))
    assert facts["digest_override"] is True and facts["digest_ok"] is False
    assert facts["catalog_digest"] == "f" * 64


def test_missing_model_is_backend_error(ollama_target):
    ghost = dataclasses.replace(ollama_target.model, tag="no-such-model:0b-q0")
    b = fast_backend(ollama_target.host, warmup=False)
    with pytest.raises(BackendError, match="no-such-model:0b-q0") as err:
        b.prepare(ghost)
    assert "\n" not in str(err.value)
    with pytest.raises(BackendError, match="not found"):
        b.generate(ghost, PROMPT, {}, timeout_s=30)


def test_timeout_on_real_inference_returns_partial_in_time(ollama_target):
    b = fast_backend(ollama_target.host)
    b.generate(ollama_target.model, "Hi", {"num_predict": 1}, timeout_s=120)  # loaded, so the bound is about decode
    t0 = time.monotonic()
    with pytest.raises(AnswerTimeout) as err:
        b.generate(ollama_target.model, "Write a long story about a robot.", {"num_predict": 2000}, timeout_s=0.3)
    assert time.monotonic() - t0 < 0.3 + 2.0
    assert err.value.partial is not None and err.value.partial.t_send_ns <= err.value.partial.t_last_token_ns


# -- options, server-side view (test server only) --------------------------------------------------------------


def test_options_and_keep_alive_are_sent(scripted_server):
    b = fast_backend(scripted_server.host, options={"num_ctx": 2048, "seed": 7}, keep_alive=-1)
    b.generate(DEMO, PROMPT, {"num_predict": 5, "num_thread": 2}, timeout_s=10)
    path, body = [r for r in scripted_server.requests if r[0] == "/api/generate"][-1]
    assert body["options"] == {"temperature": 0, "num_ctx": 2048, "seed": 7, "num_predict": 5, "num_thread": 2}
    assert body["keep_alive"] == -1 and body["stream"] is True and body["prompt"] == PROMPT
    b.generate(DEMO, PROMPT, {"keep_alive": "5m", "temperature": 0.5}, timeout_s=10)
    body = scripted_server.requests[-1][1]
    assert body["keep_alive"] == "5m" and body["options"]["temperature"] == 0.5 and "keep_alive" not in body["options"]


def test_unknown_option_refused():
    with pytest.raises(BackendError, match="tempreature"):
        OllamaBackend("http://127.0.0.1:9", options={"tempreature": 0})


def test_timing_fields_copied_from_final_chunk(scripted_server):
    c = fast_backend(scripted_server.host).generate(DEMO, PROMPT, {}, timeout_s=10)
    assert c.text == scripted_server.scripted_reply
    assert c.eval_count == len(scripted_server.scripted_reply.split())
    assert c.load_duration_ns == 0 and c.done_reason == "stop"


def test_registry_and_describe_without_server_contact():
    b = get_backend("ollama", host="http://127.0.0.1:9")
    assert isinstance(b, OllamaBackend) and b.base_url == "http://127.0.0.1:9"


# -- faults: each ends as ok, AnswerTimeout or AnswerFailed (with a reason), within its bound -------------------

FAULTS = [
    # (fault kind, params, timeout_s, expected outcome, text in the reason)
    ("error_500", {"count": 1}, 5.0, "ok", None),
    ("error_500", {"count": -1}, 5.0, AnswerFailed, "HTTP 500"),
    ("error_503", {"count": -1}, 5.0, AnswerFailed, "HTTP 503"),
    ("drop", {"after_chunks": 0, "count": 1}, 5.0, "ok", None),
    ("drop", {"after_chunks": 0, "count": -1}, 5.0, AnswerFailed, "dropped before the first token"),
    ("drop", {"after_chunks": 3, "count": -1}, 5.0, AnswerFailed, "stream dropped after 3 chunks"),
    ("error_in_stream", {"after_chunks": 2}, 5.0, AnswerFailed, "mid-stream"),
    ("truncate", {"after_chunks": 2}, 5.0, AnswerFailed, "without a final"),
    ("stall", {"after_chunks": 3}, 1.0, AnswerTimeout, "stalled"),
    ("stall", {"after_chunks": 0}, 1.0, AnswerTimeout, "no reply"),
    ("slow", {"seconds": 0.15, "count": -1}, 0.8, AnswerTimeout, "within 0.8 s"),
    ("slow", {"seconds": 0.01, "count": -1}, 5.0, "ok", None),
]


@pytest.mark.parametrize("kind,params,timeout_s,expected,reason", FAULTS, ids=[f"{f[0]}-{i}" for i, f in enumerate(FAULTS)])
def test_fault_outcomes(scripted_server, kind, params, timeout_s, expected, reason):
    scripted_server.inject(kind, **params)
    b = fast_backend(scripted_server.host)
    t0 = time.monotonic()
    if expected == "ok":
        c = b.generate(DEMO, PROMPT, {}, timeout_s)
        assert c.text == scripted_server.scripted_reply
    else:
        with pytest.raises(expected) as err:
            b.generate(DEMO, PROMPT, {}, timeout_s)
        msg = str(err.value)
        assert reason in msg and "\n" not in msg
        if expected is AnswerTimeout:
            p = err.value.partial
            assert p is not None and scripted_server.scripted_reply.startswith(p.text)
            if params.get("after_chunks"):
                assert p.text and p.t_first_token_ns is not None
    elapsed = time.monotonic() - t0
    assert elapsed < timeout_s + 1.5, f"{kind} took {elapsed:.2f} s with a {timeout_s} s timeout"
    b.close()


def test_no_retry_after_the_first_token(scripted_server):
    scripted_server.inject("drop", after_chunks=2, count=-1)
    with pytest.raises(AnswerFailed):
        fast_backend(scripted_server.host, retries=3).generate(DEMO, PROMPT, {}, 5)
    assert sum(1 for p, _ in scripted_server.requests if p == "/api/generate") == 1


def test_retries_are_bounded_and_logged(scripted_server, caplog):
    scripted_server.inject("error_500", count=-1)
    with pytest.raises(AnswerFailed, match="after 3 attempts"):
        fast_backend(scripted_server.host, retries=2).generate(DEMO, PROMPT, {}, 5)
    assert sum(1 for p, _ in scripted_server.requests if p == "/api/generate") == 3
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


def test_stall_never_exceeds_timeout_even_with_long_read_timeout(scripted_server):
    scripted_server.inject("stall", after_chunks=4)
    b = fast_backend(scripted_server.host, read_timeout_s=1200.0)
    t0 = time.monotonic()
    with pytest.raises(AnswerTimeout):
        b.generate(DEMO, PROMPT, {}, 0.7)
    assert time.monotonic() - t0 < 0.7 + 0.5
    scripted_server.reset()
    assert b.generate(DEMO, PROMPT, {}, 5).text == scripted_server.scripted_reply  # backend still usable


def test_unreachable_server_is_backend_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        b = fast_backend(f"http://127.0.0.1:{port}")
        t0 = time.monotonic()
        with pytest.raises(BackendError, match="unreachable") as err:
            b.generate(DEMO, PROMPT, {}, 5)
        assert not isinstance(err.value, (AnswerFailed, AnswerTimeout)) and "\n" not in str(err.value)
        with pytest.raises(BackendError, match="unreachable"):
            b.describe()
    assert time.monotonic() - t0 < 5


def test_digest_changed_on_server_refuses(scripted_server):
    scripted_server.set_digest(DEMO.tag, "a" * 64)
    with pytest.raises(DigestMismatch, match="a" * 64):
        fast_backend(scripted_server.host, warmup=False).prepare(DEMO)


def test_model_removed_from_server(scripted_server):
    scripted_server.remove_model(DEMO.tag)
    with pytest.raises(BackendError, match="not on the Ollama server"):
        fast_backend(scripted_server.host).prepare(DEMO)


def test_ram_precheck_skips(scripted_server):
    b = fast_backend(scripted_server.host, mem_available=lambda: 64 * 1024**2)
    with pytest.raises(ModelSkipped, match="skipped: needs more RAM") as err:
        b.prepare(DEMO)
    assert err.value.needed_bytes > err.value.available_bytes


def test_control_api_over_http(scripted_server):
    r = httpx.post(f"{scripted_server.host}/_control/fault", json={"kind": "error_500", "count": -1})
    assert r.status_code == 200
    with pytest.raises(AnswerFailed, match="HTTP 500"):
        fast_backend(scripted_server.host, retries=0).generate(DEMO, PROMPT, {}, 5)
    httpx.post(f"{scripted_server.host}/_control/reset")
    assert fast_backend(scripted_server.host).generate(DEMO, PROMPT, {}, 5).text
