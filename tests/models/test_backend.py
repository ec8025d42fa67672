"""The Backend seam: the chat layer runs on any `Backend`; the local engine is one (issue 10 item 3)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from agentkit.api.requests import ChatCompletionRequest
from agentkit.chat.processing import ChatStream, collect_chat, prepare_chat
from agentkit.engine.chat_template import ChatTemplate
from agentkit.engine.params import SamplingParams
from agentkit.engine.sequence import EngineRequest, RequestOutput, SeqDelta
from agentkit.models.backend import Backend, BackendHealth
from agentkit.models.served import ServedModel


class CharTokenizer:
    """One token per character (its code point): enough for prepare_chat and collect_chat."""

    vocab_size = 0x110000
    hf = SimpleNamespace(get_vocab=lambda: {"x": 0}, added_tokens_decoder={})

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(map(chr, ids))


class EchoBackend:
    """A pure-Python backend that answers each request with its prompt, one character per event."""

    kind = "echo"

    def __init__(self) -> None:
        self.submitted: list[EngineRequest] = []
        self.cancelled: list[EngineRequest] = []

    def submit(self, req: EngineRequest) -> EngineRequest:
        self.submitted.append(req)
        for i, t in enumerate(req.prompt_ids):
            last = i == len(req.prompt_ids) - 1
            delta = SeqDelta(0, chr(t), [t], [], finish_reason="stop" if last else None)
            req.outputs.put(RequestOutput(req.request_id, [delta], finished=last, prompt_tokens=len(req.prompt_ids),
                                          completion_tokens=i + 1))
        return req

    def cancel(self, req: EngineRequest) -> None:
        self.cancelled.append(req)

    def shutdown(self) -> None:
        pass

    def health(self) -> BackendHealth:
        return BackendHealth(alive=True)


def served(backend: EchoBackend) -> ServedModel:
    template = ChatTemplate(source="{% for m in messages %}{{ m['content'] }}{% endfor %}", origin="test")
    return ServedModel(model_id="echo", backend=backend, tokenizer=CharTokenizer(), template=template,
                       generation_config={}, max_seq_len=4096, arch="echo", load_time_s=0.0)


def chat_through_echo() -> tuple[str, str, EchoBackend]:
    """A non-streamed, a streamed and a streamed-then-closed chat request through an `EchoBackend`."""
    backend = EchoBackend()
    model = served(backend)
    request = ChatCompletionRequest(messages=[{"role": "user", "content": "hello seam"}], model="echo", max_tokens=32)
    ereq, plan = prepare_chat(request, model)
    model.backend.submit(ereq)
    reply = collect_chat(ereq, model, False, plan).choices[0].message.content
    ereq, plan = prepare_chat(request, model)
    model.backend.submit(ereq)
    streamed = "".join(c.choices[0].delta.content or "" for c in ChatStream(ereq, model, False, plan))
    ereq, plan = prepare_chat(request, model)
    stream = ChatStream(model.backend.submit(ereq), model, False, plan)
    next(stream)
    stream.close()  # ends the third request early
    return reply, streamed, backend


def test_chat_layer_runs_on_a_fake_backend():
    reply, streamed, backend = chat_through_echo()
    assert reply == streamed == "hello seam"
    assert isinstance(backend, Backend)
    assert len(backend.submitted) == 3
    # collect_chat's request and the stream closed early end through Backend.cancel
    assert backend.cancelled == [backend.submitted[0], backend.submitted[2]]
    assert not hasattr(backend, "engine")


def test_chat_through_fake_backend_never_imports_torch():
    code = ("import runpy, sys\n"
            f"ns = runpy.run_path({__file__!r})\n"
            "reply, streamed, _ = ns['chat_through_echo']()\n"
            "assert reply == streamed == 'hello seam', (reply, streamed)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    out = subprocess.run([sys.executable, "-c", code], cwd="/tmp", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_served_model_without_a_local_engine_says_so():
    model = served(EchoBackend())
    assert model.backend_kind == model.runner_kind == "echo"
    with pytest.raises(AttributeError, match="EchoBackend.*no local engine"):
        model.engine  # noqa: B018


def test_local_engine_is_a_backend(tiny_llama):
    from agentkit import Runner, Which
    from agentkit.models.local import ModelHost

    with Runner(Which.Plain(tiny_llama), progress=False) as r:
        host = r.served_model()
        assert ModelHost is ServedModel and isinstance(host, ServedModel)
        assert isinstance(host.backend, Backend) and host.backend_kind in ("native", "transformers")
        assert host.backend.health() == BackendHealth(alive=True, active=0)
        host.backend.shutdown()
        health = host.backend.health()
        assert not health.alive and health.detail == "shut down"
        with pytest.raises(RuntimeError, match="shut down"):
            host.backend.submit(EngineRequest("x", [1, 2, 3], SamplingParams(max_tokens=2)))
