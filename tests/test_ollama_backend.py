"""OllamaBackend against Ollama 0.6.0's behaviour: integration (the test server on real llama.cpp, or a real Ollama via
OLLAMA_HOST), then the behaviours of the release (each with its source) and injected faults on the test server."""

from __future__ import annotations

import dataclasses
import socket
import time

import httpx
import pytest

from bench.backends import AnswerFailed, AnswerTimeout, LoadFailed, ModelSkipped, get_backend
from bench.backends.ollama import OllamaBackend
from bench.catalog import models
from bench.errors import BackendError, DigestMismatch

from ollama_server import OllamaTestServer, served_from_catalog

DEMO = dataclasses.replace(models()["smollm2:135m-instruct-q4_1"], backend="ollama")
PROMPT = "What is 2 + 3? Print only the answer surrounded by <ANS> and </ANS>."
REPLY = "The answer is <ANS> 42 </ANS> and that is all ."  # the scripted_server's reply: 11 words


def fast_backend(host: str, **kw) -> OllamaBackend:
    kw.setdefault("retries", 2)
    kw.setdefault("retry_wait_s", 0.01)
    kw.setdefault("warmup_tokens", 4)
    return OllamaBackend(host, **kw)


def generates(server: OllamaTestServer) -> int:
    return sum(1 for p, _ in server.requests if p == "/api/generate")


# -- integration: the same tests against the test server or a real Ollama --------------------------------------


def test_generate_streams_timings_and_stamps(ollama_target):
    b = fast_backend(ollama_target.host)
    t0 = time.monotonic_ns()
    c = b.generate(ollama_target.model, PROMPT, {"num_predict": 24, "seed": 1, "num_ctx": 2048}, timeout_s=120)
    assert c.text.strip() and c.complete
    assert t0 <= c.t_send_ns < c.t_first_token_ns <= c.t_last_token_ns <= time.monotonic_ns()
    assert c.eval_count and 0 < c.eval_count <= 24
    assert c.prompt_eval_count and c.prompt_eval_count > 0 and c.num_ctx == 2048 and c.prompt_truncated is False
    assert c.load_duration_ns > 0  # routes.go: the time until the runner was scheduled, never 0
    assert c.total_duration_ns > c.load_duration_ns
    # runner.go Timings are whole milliseconds (Milliseconds()), so the durations are multiples of 1 ms
    assert c.prompt_eval_duration_ns % 1_000_000 == 0
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
    assert d["host"] == ollama_target.host.rstrip("/") and d["server_version"]


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
    with pytest.raises(BackendError, match="not found"):  # routes.go: 404 "model 'x' not found"
        b.generate(ghost, PROMPT, {}, timeout_s=30)


def test_timeout_on_real_inference_returns_partial_in_time(ollama_target):
    b = fast_backend(ollama_target.host)
    b.generate(ollama_target.model, "Hi", {"num_predict": 1}, timeout_s=120)  # loaded, so the bound is about decode
    t0 = time.monotonic()
    with pytest.raises(AnswerTimeout) as err:
        b.generate(ollama_target.model, "Write a long story about a robot.", {"num_predict": 2000}, timeout_s=0.3)
    assert time.monotonic() - t0 < 0.3 + 2.0
    assert err.value.partial is not None and err.value.partial.t_send_ns <= err.value.partial.t_last_token_ns


# -- the release's behaviours, on the test server --------------------------------------------------------------


def test_options_and_keep_alive_are_sent(scripted_server):
    b = fast_backend(scripted_server.host, options={"num_ctx": 2048, "seed": 7}, keep_alive=-1)
    b.generate(DEMO, PROMPT, {"num_predict": 5, "num_thread": 2}, timeout_s=10)
    path, body = [r for r in scripted_server.requests if r[0] == "/api/generate"][-1]
    assert body["options"] == {"temperature": 0, "num_ctx": 2048, "seed": 7, "num_predict": 5, "num_thread": 2}
    assert body["keep_alive"] == -1 and body["stream"] is True and body["prompt"] == PROMPT
    b.generate(DEMO, PROMPT, {"keep_alive": "5m", "temperature": 0.5}, timeout_s=10)
    body = scripted_server.requests[-1][1]
    assert body["keep_alive"] == "5m" and body["options"]["temperature"] == 0.5 and "keep_alive" not in body["options"]


def test_a_unitless_keep_alive_string_is_refused(scripted_server):
    # api/types.go Duration.UnmarshalJSON hands strings to time.ParseDuration: HTTP 400 with Go's error text
    r = httpx.post(f"{scripted_server.host}/api/generate", json={"model": DEMO.tag, "prompt": "hi", "keep_alive": "-1"})
    assert r.status_code == 400 and r.json() == {"error": 'time: missing unit in duration "-1"'}
    with pytest.raises(BackendError, match=r'keep_alive .-1.: time: missing unit in duration "-1"'):
        fast_backend(scripted_server.host, keep_alive="-1")
    fast_backend(scripted_server.host, keep_alive=-1).generate(DEMO, PROMPT, {}, timeout_s=10)  # a number: forever


def test_unknown_option_refused():
    with pytest.raises(BackendError, match="tempreature"):
        OllamaBackend("http://127.0.0.1:9", options={"tempreature": 0})


def test_timing_fields_are_the_final_chunks(scripted_server):
    c = fast_backend(scripted_server.host).generate(DEMO, PROMPT, {}, timeout_s=10)
    assert c.text == REPLY and c.done_reason == "stop" and c.complete
    # runner.go: eval_count counts decode passes, including the one that sampled end-of-generation
    assert c.eval_count == len(REPLY.split()) + 1
    assert c.load_duration_ns > 0 and c.total_duration_ns >= c.load_duration_ns


def test_num_predict_stops_after_exactly_that_many_tokens(scripted_server):
    c = fast_backend(scripted_server.host).generate(DEMO, PROMPT, {"num_predict": 3}, timeout_s=10)
    assert c.text == "The answer is " and c.eval_count == 3 and c.done_reason == "length"


def test_a_looping_answer_is_kept_without_a_done_chunk():
    """llm/server.go: after the same trimmed piece 31 times in a row the completion returns without a final response,
    so the stream ends cleanly with no done chunk; the text so far is kept."""
    loop = "Answer: " + "no " * 40
    with OllamaTestServer(scripted_reply=loop) as srv:
        c = fast_backend(srv.host).generate(DEMO, PROMPT, {}, timeout_s=10)
    assert not c.complete and c.text == "Answer: " + "no " * 31
    # <=: a scripted reply this fast can reach the host in one segment, and the stamps are its arrival
    assert c.eval_count is None and c.done_reason is None and c.t_send_ns < c.t_first_token_ns <= c.t_last_token_ns


def test_a_long_prompt_is_cut_to_the_default_context_and_flagged():
    """envconfig: OLLAMA_CONTEXT_LENGTH defaults to 2048 in 0.6.0; runner.go NewSequence cuts a longer prompt to
    exactly num_ctx tokens without a word."""
    long_prompt = " ".join(f"w{i}" for i in range(3000))
    with OllamaTestServer(scripted_reply="ok") as srv:
        b = fast_backend(srv.host)
        cut = b.generate(DEMO, long_prompt, {}, timeout_s=10)
        whole = b.generate(DEMO, long_prompt, {"num_ctx": 4096}, timeout_s=10)
    assert cut.prompt_eval_count == 2048 and cut.num_ctx == 2048 and cut.prompt_truncated
    assert whole.prompt_eval_count > 3000 and whole.num_ctx == 4096 and whole.prompt_truncated is False


def test_cached_prompt_tokens_match_what_the_runner_reused():
    """cache.go LoadCacheSlot reuses the common prefix (here the template's system part) but prompt_eval_count still
    counts it; the backend's estimate from the final chunks' ``context`` equals what the runner did."""
    with OllamaTestServer(scripted_reply="ok .") as srv:
        b = fast_backend(srv.host, warmup=False)
        b.prepare(DEMO)  # not loaded yet: the first answer's cache is empty
        first = b.generate(DEMO, "What is two plus three?", {}, timeout_s=10)
        second = b.generate(DEMO, "Name a colour of the sky.", {}, timeout_s=10)
        again = b.generate(DEMO, "Name a colour of the sky.", {}, timeout_s=10)
        reloaded = b.generate(DEMO, "Name a colour of the sky.", {"num_ctx": 4096}, timeout_s=10)
        traces = srv.traces
    assert [t.cached for t in traces] == [first.prompt_cached_tokens, second.prompt_cached_tokens,
                                          again.prompt_cached_tokens, reloaded.prompt_cached_tokens]
    assert first.prompt_cached_tokens == 0 and second.prompt_cached_tokens > 10  # the system prompt's tokens
    assert again.prompt_cached_tokens == again.prompt_eval_count - 1  # all but one input (cache.go)
    assert reloaded.prompt_cached_tokens == 0 and traces[-1].loaded  # another num_ctx: a new runner (sched.go)


def test_the_warm_up_loads_the_runner_the_answers_need(scripted_server):
    """sched.go needsReload: load-time options that differ from the loaded runner's reload it. The warm-up sends the
    spec's options, so the first answer does not pay a reload inside its energy window."""
    b = fast_backend(scripted_server.host, options={"num_ctx": 4096, "num_thread": 1})
    b.prepare(DEMO)
    b.generate(DEMO, PROMPT, {}, timeout_s=10)
    assert [t.loaded for t in scripted_server.traces] == [True, False]
    b.generate(DEMO, PROMPT, {"num_batch": 256}, timeout_s=10)
    assert scripted_server.traces[-1].loaded


def test_a_model_that_needs_more_memory_than_is_free_is_a_load_failure():
    """llm/server.go NewLlamaServer: HTTP 500 "model requires more system memory (...) than is available (...)"."""
    big = served_from_catalog(DEMO.tag, memory_bytes=6 * 1024**3)
    with OllamaTestServer(models=[big], free_memory_bytes=3 * 1024**3) as srv:
        with pytest.raises(LoadFailed) as err:
            fast_backend(srv.host, retries=3).generate(DEMO, PROMPT, {}, timeout_s=10)
        assert generates(srv) == 1  # not retried: another attempt cannot free memory
    assert isinstance(err.value, ModelSkipped)
    assert "model requires more system memory (6.0 GiB) than is available (3.0 GiB)" in str(err.value)


@pytest.mark.parametrize("fault, text", [("load_killed", "llama runner process has terminated"),
                                         ("load_timeout", "timed out waiting for llama runner to start")])
def test_a_runner_that_dies_or_stalls_while_loading_is_a_load_failure(scripted_server, fault, text):
    scripted_server.inject(fault)
    with pytest.raises(LoadFailed, match=text):
        fast_backend(scripted_server.host).generate(DEMO, PROMPT, {}, timeout_s=10)


def test_a_runner_crash_before_the_first_token_is_retried(scripted_server):
    """routes.go GenerateHandler: the completion's error goes down the stream, so a runner that died before answering
    is a 200 stream with one error line; the next request reloads the runner (sched.go pings it)."""
    scripted_server.inject("runner_crash")
    c = fast_backend(scripted_server.host).generate(DEMO, PROMPT, {}, timeout_s=10)
    assert c.text == REPLY and generates(scripted_server) == 2
    assert [t.loaded for t in scripted_server.traces] == [True, True]


def test_an_error_line_after_tokens_is_not_retried(scripted_server):
    scripted_server.inject("error_in_stream", after_chunks=3, message="an error was encountered while running the model")
    with pytest.raises(AnswerFailed, match="runner error after 3 pieces"):
        fast_backend(scripted_server.host, retries=3).generate(DEMO, PROMPT, {}, 5)
    assert generates(scripted_server) == 1


def test_registry_builds_without_server_contact():
    b = get_backend("ollama", host="http://127.0.0.1:9")
    assert isinstance(b, OllamaBackend) and b.base_url == "http://127.0.0.1:9"
    assert OllamaBackend("0.0.0.0:11434").base_url == "http://0.0.0.0:11434"  # $OLLAMA_HOST's bare form


# -- injected faults: each ends as ok, AnswerTimeout or AnswerFailed (with a reason), within its bound ------------

FAULTS = [
    # (fault kind, params, timeout_s, expected outcome, text in the reason)
    ("error_500", {"count": 1}, 5.0, "ok", None),
    ("error_500", {"count": -1}, 5.0, AnswerFailed, "HTTP 500"),
    ("error_503", {"count": -1}, 5.0, AnswerFailed, "HTTP 503"),
    ("drop", {"after_chunks": 0, "count": 1}, 5.0, "ok", None),
    ("drop", {"after_chunks": 0, "count": -1}, 5.0, AnswerFailed, "connection dropped before the first token"),
    ("drop", {"after_chunks": 3, "count": -1}, 5.0, AnswerFailed, "connection dropped after 3 pieces"),
    ("error_in_stream", {"after_chunks": 0, "count": 1}, 5.0, "ok", None),
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
        assert c.text == REPLY
    else:
        with pytest.raises(expected) as err:
            b.generate(DEMO, PROMPT, {}, timeout_s)
        msg = str(err.value)
        assert reason in msg and "\n" not in msg
        if expected is AnswerTimeout:
            p = err.value.partial
            assert p is not None and REPLY.startswith(p.text) and not p.complete
            if params.get("after_chunks"):
                assert p.text and p.t_first_token_ns is not None
    elapsed = time.monotonic() - t0
    assert elapsed < timeout_s + 1.5, f"{kind} took {elapsed:.2f} s with a {timeout_s} s timeout"
    b.close()


def test_a_stream_cut_cleanly_is_an_incomplete_answer(scripted_server):
    scripted_server.inject("truncate", after_chunks=2)
    c = fast_backend(scripted_server.host).generate(DEMO, PROMPT, {}, 5)
    assert not c.complete and c.text == "The answer " and c.eval_count is None


def test_no_retry_after_the_first_token(scripted_server):
    scripted_server.inject("drop", after_chunks=2, count=-1)
    with pytest.raises(AnswerFailed):
        fast_backend(scripted_server.host, retries=3).generate(DEMO, PROMPT, {}, 5)
    assert generates(scripted_server) == 1


def test_retries_are_bounded_and_logged(scripted_server, caplog):
    scripted_server.inject("error_500", count=-1)
    with pytest.raises(AnswerFailed, match="after 3 attempts"):
        fast_backend(scripted_server.host, retries=2).generate(DEMO, PROMPT, {}, 5)
    assert generates(scripted_server) == 3
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


def test_stall_never_exceeds_timeout(scripted_server):
    scripted_server.inject("stall", after_chunks=4)
    b = fast_backend(scripted_server.host)
    t0 = time.monotonic()
    with pytest.raises(AnswerTimeout):
        b.generate(DEMO, PROMPT, {}, 0.7)
    assert time.monotonic() - t0 < 0.7 + 0.5
    scripted_server.reset()
    assert b.generate(DEMO, PROMPT, {}, 5).text == REPLY  # backend still usable


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


def test_a_warm_up_that_times_out_skips_the_model():
    with OllamaTestServer(scripted_reply=REPLY, token_delay_s=0.2) as srv:
        with pytest.raises(ModelSkipped, match="warm-up did not finish within 0.3 s"):
            fast_backend(srv.host, warmup_timeout_s=0.3).prepare(DEMO)


def test_control_api_over_http(scripted_server):
    r = httpx.post(f"{scripted_server.host}/_control/fault", json={"kind": "error_500", "count": -1})
    assert r.status_code == 200
    with pytest.raises(AnswerFailed, match="HTTP 500"):
        fast_backend(scripted_server.host, retries=0).generate(DEMO, PROMPT, {}, 5)
    httpx.post(f"{scripted_server.host}/_control/reset")
    assert fast_backend(scripted_server.host).generate(DEMO, PROMPT, {}, 5).text
