"""LlamaCppBackend on the real SmolLM2-135M GGUF, and the Ollama-API test server on top of it."""

from __future__ import annotations

import dataclasses
import time

import pytest

from bench.backends import AnswerTimeout, ModelSkipped, get_backend
from bench.backends.llamacpp import LlamaCppBackend, gguf_path
from bench.catalog import models
from bench.errors import BackendError, CatalogError, DigestMismatch

pytestmark = pytest.mark.llm

DEMO = models()["smollm2:135m-instruct-q4_1"]
PROMPT = "What is 2 + 3? Print only the answer surrounded by <ANS> and </ANS>."


def test_registry():
    assert isinstance(get_backend("llamacpp", n_ctx=512, warmup=False), LlamaCppBackend)
    with pytest.raises(CatalogError, match="Did you mean 'llamacpp'"):
        get_backend("llama.cpp")


def test_gguf_found_without_importing_its_package():
    path = gguf_path(DEMO)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size == DEMO.size_bytes


def test_describe(llama_engine):
    d = llama_engine.describe()
    assert d["backend"] == "llamacpp" and d["llama_cpp_python"] and d["host"] == "in-process"


def test_generate_fields_are_consistent(llama_engine):
    c = llama_engine.generate(DEMO, PROMPT, {"num_predict": 12}, timeout_s=60)
    assert c.text.strip()
    assert c.t_send_ns < c.t_first_token_ns <= c.t_last_token_ns
    assert c.prompt_eval_count > 10  # chat template + prompt tokens
    assert 0 < c.eval_count <= 12
    # the backend's own counters, stamped inside its stream: within a few ms of the shared host stamps
    assert abs(c.total_duration_ns - (c.t_last_token_ns - c.t_send_ns)) < 5e6
    assert abs(c.eval_duration_ns - (c.t_last_token_ns - c.t_first_token_ns)) < 5e6
    assert abs(c.prompt_eval_duration_ns - (c.t_first_token_ns - c.t_send_ns)) < 5e6
    assert c.num_ctx == 2048 and c.complete
    assert c.done_reason in ("stop", "length")
    if c.done_reason == "length":
        assert c.eval_count == 12


def test_greedy_is_deterministic(llama_engine):
    a = llama_engine.generate(DEMO, PROMPT, {"num_predict": 20}, timeout_s=60)
    b = llama_engine.generate(DEMO, PROMPT, {"num_predict": 20, "seed": 99}, timeout_s=60)
    assert a.text == b.text and a.eval_count == b.eval_count


def test_timeout_per_token_with_partial(llama_engine):
    story = "Write a very long story about a lighthouse."
    llama_engine.generate(DEMO, story, {"num_predict": 1}, timeout_s=60)  # prompt now cached: the bound is per token
    t0 = time.monotonic()
    with pytest.raises(AnswerTimeout) as err:
        llama_engine.generate(DEMO, story, {"num_predict": 4000}, timeout_s=0.25)
    assert time.monotonic() - t0 < 0.25 + 2.0
    p = err.value.partial
    assert p is not None and p.t_last_token_ns - p.t_send_ns < 2.25e9
    assert "\n" not in str(err.value)


def test_digest_mismatch_refuses(llama_engine):
    with pytest.raises(DigestMismatch) as err:
        llama_engine.prepare(dataclasses.replace(DEMO, digest="0" * 64))
    msg = str(err.value)
    assert "\n" not in msg and "0" * 64 in msg and DEMO.digest in msg


def test_unknown_option_and_wrong_backend(llama_engine):
    with pytest.raises(BackendError, match="num_gpu_layers"):
        llama_engine.generate(DEMO, PROMPT, {"num_gpu_layers": 1}, timeout_s=5)
    with pytest.raises(BackendError, match="not 'llamacpp'"):
        llama_engine.prepare(models()["qwen2.5:0.5b-instruct-q4_0"])


def test_ram_precheck_skips_before_loading():
    b = LlamaCppBackend(mem_available=lambda: 32 * 1024**2, warmup=False)
    with pytest.raises(ModelSkipped, match="skipped: needs more RAM"):
        b.prepare(DEMO)
    assert b._llm is None


def test_prepare_warmup_and_load_duration(llama_engine):  # llama_engine: skips without llama_cpp
    b = LlamaCppBackend(n_ctx=512, n_threads=2, warmup=True, warmup_tokens=3)
    try:
        facts = b.prepare(DEMO)
        assert facts["digest_ok"] and facts["load_s"] > 0 and facts["context_length"] == 8192
        assert facts["warmup"]["load_duration_ns"] > 0 and facts["warmup"]["eval_count"] <= 3
        c = b.generate(DEMO, PROMPT, {"num_predict": 2}, timeout_s=30)
        assert c.load_duration_ns == 0  # the load was reported once, by the warm-up
    finally:
        b.close()


def test_test_server_answers_with_real_inference(llama_engine, llama_runner):
    """The Ollama test server's llama.cpp engine gives the same greedy answer as this backend, through the real
    ``ollama`` client, for the tag and for an alias it serves."""
    import ollama

    from ollama_server import OllamaTestServer, served_from_catalog

    alias = "qwen2.5:0.5b-instruct-q4_K_M"
    with OllamaTestServer(llama_runner, models=[served_from_catalog(DEMO.tag), served_from_catalog(alias)]) as srv:
        client = ollama.Client(host=srv.host)
        own = llama_engine.generate(DEMO, PROMPT, {"num_predict": 16}, timeout_s=60)
        direct = own.text
        r = client.generate(model=DEMO.tag, prompt=PROMPT, options={"temperature": 0, "num_predict": 16})
        assert r.response == direct and r.done and r.done_reason == own.done_reason
        # Ollama's eval_count counts the end-of-generation token it sampled (runner.go numDecoded); this backend not
        assert r.eval_count == own.eval_count + (r.done_reason == "stop")
        chat = client.chat(model=alias, messages=[{"role": "user", "content": PROMPT}],
                           options={"temperature": 0, "num_predict": 16})
        assert chat.message.content == direct  # the alias is answered by the same engine
        tags = {m.model: m.digest for m in client.list().models}
        assert tags[alias] == models()[alias].digest
        assert client.show(DEMO.tag).details.quantization_level == "Q4_1"
