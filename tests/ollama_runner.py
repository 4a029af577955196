"""The runner side of the Ollama test server: loading, scheduling and generation as Ollama 0.6.0 does them.

Behaviours, each from the source at tag v0.6.0 (github.com/ollama/ollama):

- one runner per loaded model; a request whose load-time options (``api.Runner``: num_ctx, num_batch, num_thread,
  ...) differ from the loaded runner's reloads it (server/sched.go needsReload), and a dead runner is reloaded too
  (needsReload pings it);
- the runner stays loaded for the request's ``keep_alive`` after it ends (default ``OLLAMA_KEEP_ALIVE``, 5 m;
  server/sched.go, envconfig/config.go); ``keep_alive`` 0 unloads it right after;
- loading fails with "model requires more system memory (X) than is available (Y)" when the estimate exceeds free
  memory (llm/server.go NewLlamaServer, sizes as format.HumanBytes2), "llama runner process has terminated: ..."
  when the runner dies while loading and "timed out waiting for llama runner to start - progress 0.00 - " after
  OLLAMA_LOAD_TIMEOUT (llm/server.go WaitUntilRunning);
- the default context is OLLAMA_CONTEXT_LENGTH, 2048 in 0.6.0 (envconfig/config.go); a prompt longer than the
  context is cut silently to exactly num_ctx tokens, keeping the first num_keep (+1 for BOS) and dropping what
  follows them (runner/llamarunner/runner.go NewSequence);
- the prompt cache: the slot's inputs (last prompt + generated tokens) are compared with the new prompt and the
  common prefix is not evaluated again, leaving one input when it covers the whole prompt (runner/llamarunner/
  cache.go LoadCacheSlot); ``prompt_eval_count`` is still the whole (cut) prompt (``numPromptInputs``);
- ``eval_count`` is the number of decode passes after the prompt, so it counts the end-of-generation token that
  is sampled but never sent; a ``num_predict`` limit stops after exactly that many tokens (``done_reason``
  "length"); pieces wait while they end in an incomplete UTF-8 sequence or a possible stop string, so one chunk
  can carry several tokens (runner.go processBatch, flushPending);
- ``prompt_eval_duration`` and ``eval_duration`` are whole milliseconds (runner.go Timings take
  ``.Milliseconds()``; llm/server.go parseDurationMs turns them back into durations);
- ``num_predict`` < 0 or > 10 x num_ctx is capped at 10 x num_ctx (llm/server.go Completion);
- the repeat guard: when the trimmed piece equals the previous one more than 30 times in a row, the completion
  returns without its final (done) response (llm/server.go Completion: ``tokenRepeat > 30`` returns ctx.Err(),
  which is nil), so the stream ends with no done chunk.

Engines answer for the runner: ``ScriptedEngine`` (words as tokens, a fixed reply, paced by sleeps) and
``LlamaEngine`` (real llama.cpp inference on the demo GGUF, with llama.cpp's own prefix reuse).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

GiB, MiB, KiB = 1024**3, 1024**2, 1024
NS_PER_MS = 1_000_000

# api/types.go Runner (json names) and DefaultOptions at v0.6.0.
RUNNER_FIELDS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "low_vram", "f16_kv", "logits_all", "vocab_only",
                 "use_mmap", "use_mlock", "num_thread")
DEFAULTS: dict[str, Any] = {"num_predict": -1, "num_keep": 4, "temperature": 0.8, "top_k": 40, "top_p": 0.9,
                            "min_p": 0.0, "typical_p": 1.0, "repeat_last_n": 64, "repeat_penalty": 1.1,
                            "presence_penalty": 0.0, "frequency_penalty": 0.0, "seed": -1, "stop": [],
                            "num_batch": 512, "num_gpu": -1, "main_gpu": 0, "low_vram": False, "f16_kv": False,
                            "logits_all": False, "vocab_only": False, "use_mmap": None, "use_mlock": False,
                            "num_thread": 0}
REPEAT_LIMIT = 30  # llm/server.go: "30 picked as an arbitrary max token repeat limit"


def human_bytes2(n: int) -> str:
    """format/bytes.go HumanBytes2."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class LoadError(Exception):
    """A load the scheduler reports as HTTP 500 (its text is Ollama's)."""


class RunnerError(Exception):
    """A runner failure during a completion (its text is Ollama's); the handler sends it as an error line."""


class Engine(Protocol):
    """What produces tokens for a loaded runner."""

    add_bos: bool

    def load(self, options: dict[str, Any]) -> None: ...

    def tokenize(self, text: str) -> list[int]: ...

    def piece(self, token: int) -> bytes: ...

    def is_eog(self, token: int) -> bool: ...

    def generate(self, inputs: list[int], cached: int, options: dict[str, Any]) -> Iterator[int]: ...


class ScriptedEngine:
    """Words (``\\S+\\s*``) as tokens; every answer is ``reply`` then end-of-generation. ``token_delay_s`` paces
    each generated token, ``prefill_s_per_token`` each evaluated (not cached) prompt token, ``load_s`` a load."""

    add_bos = False
    EOG = 0

    def __init__(self, reply: str, *, token_delay_s: float = 0.0, prefill_s_per_token: float = 0.0,
                 load_s: float = 0.002) -> None:
        self.reply = reply
        self.token_delay_s = token_delay_s
        self.prefill_s_per_token = prefill_s_per_token
        self.load_s = load_s
        self._vocab: dict[str, int] = {}
        self._words: dict[int, str] = {}
        self._lock = threading.Lock()

    def load(self, options: dict[str, Any]) -> None:
        time.sleep(self.load_s)

    def tokenize(self, text: str) -> list[int]:
        with self._lock:
            out = []
            for word in re.findall(r"\S+\s*|\s+", text):
                if word not in self._vocab:
                    self._vocab[word] = len(self._vocab) + 1
                    self._words[self._vocab[word]] = word
                out.append(self._vocab[word])
            return out

    def piece(self, token: int) -> bytes:
        return self._words[token].encode("utf-8")

    def is_eog(self, token: int) -> bool:
        return token == self.EOG

    def generate(self, inputs: list[int], cached: int, options: dict[str, Any]) -> Iterator[int]:
        time.sleep(self.prefill_s_per_token * (len(inputs) - cached))
        for token in self.tokenize(self.reply) + [self.EOG]:
            yield token
            if self.token_delay_s:
                time.sleep(self.token_delay_s)


class LlamaEngine:
    """Real inference on a GGUF through llama-cpp-python; a load with other num_ctx/num_thread/num_batch really
    reloads it. llama.cpp reuses the common prefix of its last tokens itself (``Llama.generate``)."""

    def __init__(self, model_path: str, *, default_threads: int = 1) -> None:
        self.model_path = model_path
        self.default_threads = default_threads
        self._llm: Any = None
        self._loaded: tuple | None = None

    @property
    def add_bos(self) -> bool:
        return str(self._llm.metadata.get("tokenizer.ggml.add_bos_token", "true")).lower() == "true"

    def load(self, options: dict[str, Any]) -> None:
        import llama_cpp

        want = (options["num_ctx"], options["num_thread"] or self.default_threads, options["num_batch"])
        if self._loaded == want:
            self._llm.reset()  # a new runner starts with an empty cache
            return
        if self._llm is not None:
            self._llm.close()
        self._llm = llama_cpp.Llama(model_path=self.model_path, n_ctx=want[0], n_threads=want[1], n_batch=want[2],
                                    verbose=False)
        self._loaded = want

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm, self._loaded = None, None

    def tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def piece(self, token: int) -> bytes:
        return self._llm.detokenize([token])

    def is_eog(self, token: int) -> bool:
        return token == self._llm.token_eos()

    def generate(self, inputs: list[int], cached: int, options: dict[str, Any]) -> Iterator[int]:
        if options["seed"] >= 0:
            self._llm.set_seed(options["seed"])
        room = self._llm.n_ctx() - len(inputs)
        for i, token in enumerate(self._llm.generate(
                inputs, temp=options["temperature"], top_k=options["top_k"], top_p=options["top_p"],
                min_p=options["min_p"], typical_p=options["typical_p"], repeat_penalty=options["repeat_penalty"],
                frequency_penalty=options["frequency_penalty"], presence_penalty=options["presence_penalty"])):
            yield token
            if i + 1 >= room:  # Ollama would shift the context here; the tests never fill it with an engine
                return


@dataclass
class Runner:
    """One loaded model: its load-time options, its cache slot, when it expires."""

    tag: str
    options: dict[str, Any]
    engine: Engine
    slot: list[int] = field(default_factory=list)
    expires_at: float = 0.0
    dead: bool = False


@dataclass
class Step:
    """What the completion yields: a text piece, or the final timings (llm/server.go CompletionResponse)."""

    content: str = ""
    done: bool = False
    done_reason: str = ""
    prompt_eval_count: int = 0
    prompt_eval_duration_ns: int = 0
    eval_count: int = 0
    eval_duration_ns: int = 0


@dataclass
class Trace:
    """What the runner did for one request, for tests to compare with what a client inferred."""

    prompt_tokens: int = 0
    cached: int = 0
    truncated: bool = False
    loaded: bool = False


class Scheduler:
    """server/sched.go for one model at a time (the image runs with OLLAMA_MAX_LOADED_MODELS=1)."""

    def __init__(self, engine_for: Callable[[str], Engine], *, free_memory: Callable[[], int],
                 default_keep_alive_s: float = 300.0, context_length: int = 2048):
        self.engine_for = engine_for
        self.free_memory = free_memory
        self.default_keep_alive_s = default_keep_alive_s
        self.context_length = context_length
        self.runner: Runner | None = None
        self.lock = threading.Lock()  # OLLAMA_NUM_PARALLEL=1: one sequence at a time
        self.load_faults: list[str] = []  # injected: "killed" (runner dies while loading), "timeout"

    def options(self, request: dict[str, Any] | None) -> dict[str, Any]:
        """api.DefaultOptions, then the request's; unknown names are ignored (Options.FromMap logs a warning)."""
        opts = dict(DEFAULTS, num_ctx=self.context_length)
        opts.update({k: v for k, v in (request or {}).items() if k in DEFAULTS or k == "num_ctx"})
        return opts

    def loaded(self) -> list[Runner]:
        self._expire()
        return [self.runner] if self.runner else []

    def unload(self, tag: str) -> None:
        with self.lock:
            if self.runner and self.runner.tag == tag:
                self.runner = None

    def schedule(self, tag: str, opts: dict[str, Any], required_memory: int) -> tuple[Runner, bool]:
        """The runner for ``tag`` with these load-time options, loading it if needed; (runner, loaded now)."""
        self._expire()
        load_opts = {k: opts[k] for k in RUNNER_FIELDS}
        r = self.runner
        if r is not None and r.tag == tag and r.options == load_opts and not r.dead:
            return r, False
        self.runner = None  # unload whatever is loaded (one model at a time)
        free = self.free_memory()
        if required_memory > free:
            raise LoadError(f"model requires more system memory ({human_bytes2(required_memory)}) than is "
                            f"available ({human_bytes2(free)})")
        if self.load_faults:
            fault = self.load_faults.pop(0)
            if fault == "killed":
                raise LoadError("llama runner process has terminated: signal: killed")
            raise LoadError("timed out waiting for llama runner to start - progress 0.00 - ")
        engine = self.engine_for(tag)
        engine.load(load_opts)
        self.runner = Runner(tag, load_opts, engine)
        return self.runner, True

    def release(self, runner: Runner, keep_alive_s: float | None) -> None:
        """After a request: the runner stays for its keep-alive (0 unloads it)."""
        keep = self.default_keep_alive_s if keep_alive_s is None else keep_alive_s
        if keep <= 0:
            if self.runner is runner:
                self.runner = None
            return
        runner.expires_at = time.monotonic() + keep

    def _expire(self) -> None:
        r = self.runner
        if r is not None and r.expires_at and time.monotonic() >= r.expires_at:
            self.runner = None


def _incomplete_utf8(data: bytes) -> bool:
    """common.IncompleteUnicode: the bytes end inside a multi-byte UTF-8 sequence."""
    try:
        data.decode("utf-8")
        return False
    except UnicodeDecodeError as exc:
        return exc.end == len(data)


def complete(runner: Runner, prompt: str, opts: dict[str, Any], trace: Trace,
             crash_before_token: bool = False) -> Iterator[Step]:
    """runner/llamarunner (NewSequence, LoadCacheSlot, processBatch) and llm/server.go Completion, for one prompt."""
    engine = runner.engine
    start = time.monotonic_ns()
    if crash_before_token:  # the runner process died: Completion's status check fails before any token
        runner.dead = True
        raise RunnerError("llama runner process no longer running: -1 ")
    num_ctx = runner.options["num_ctx"]
    inputs = engine.tokenize(prompt)
    num_keep = opts["num_keep"] if opts["num_keep"] >= 0 else len(inputs)
    num_keep = min(num_keep + (1 if engine.add_bos else 0), num_ctx - 1)
    if len(inputs) > num_ctx:
        discard = len(inputs) - num_ctx
        inputs = inputs[:num_keep] + inputs[num_keep + discard:]
        trace.truncated = True
    cached = 0
    for a, b in zip(runner.slot, inputs):
        if a != b:
            break
        cached += 1
    if cached == len(inputs):
        cached -= 1
    trace.prompt_tokens, trace.cached = len(inputs), cached
    num_predict = opts["num_predict"]
    if num_predict < 0 or num_predict > 10 * num_ctx:
        num_predict = 10 * num_ctx
    stops = [s for s in opts["stop"] or [] if s]
    slot = list(inputs)
    decoded, predicted, pending = 0, 0, b""
    first_gen_ns = 0
    reason = "stop"
    last, repeats = "", 0
    tokens = engine.generate(inputs, cached, opts)
    try:
        while True:
            if predicted >= num_predict:
                reason = "length"
                break
            token = next(tokens, None)
            decoded += 1
            if decoded == 1:
                first_gen_ns = time.monotonic_ns()
            if token is None or engine.is_eog(token):
                break
            predicted += 1
            slot.append(token)
            pending += engine.piece(token)
            text = pending.decode("utf-8", "ignore")
            if any(s in text for s in stops):
                pending = text[: min(text.index(s) for s in stops if s in text)].encode("utf-8")
                break
            if any(text.endswith(s[:i]) for s in stops for i in range(1, len(s))) or _incomplete_utf8(pending):
                continue
            piece, pending = pending.decode("utf-8"), b""
            repeats = repeats + 1 if piece.strip() == last else 0
            last = piece.strip()
            if repeats > REPEAT_LIMIT:
                runner.slot = slot
                return  # llm/server.go: the repeat guard ends the completion without a final response
            yield Step(content=piece)
    finally:
        tokens.close()
    if pending:
        yield Step(content=pending.decode("utf-8", "ignore"))
    runner.slot = slot
    now = time.monotonic_ns()
    yield Step(done=True, done_reason=reason, prompt_eval_count=len(inputs),
               prompt_eval_duration_ns=(first_gen_ns - start) // NS_PER_MS * NS_PER_MS,
               eval_count=decoded, eval_duration_ns=(now - first_gen_ns) // NS_PER_MS * NS_PER_MS)
