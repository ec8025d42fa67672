"""Helpers shared by the engines of bench/workers.py: package versions, multi-turn chat, error
text, and the summary of a concurrent batch.

Scope: what `ApiEngine` (bench/workers.py) and `HfEngine` (bench/worker_hf.py) both compute, so
their answers have the same shape. Non-goals: the protocol and the engines themselves.
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

perf = time.perf_counter


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def conversation(engine: Any, system: str, users: list[str], max_tokens: int) -> dict[str, Any]:
    """Multi-turn chat: each turn appends the previous answer and a new user message."""
    messages = [{"role": "system", "content": system}]
    turns = []
    for user in users:
        messages.append({"role": "user", "content": user})
        r = engine.stream(messages, max_tokens, ignore_eos=False)
        messages.append({"role": "assistant", "content": r.pop("text")})
        turns.append(r)
    return {"turns": turns}


def error_text(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "..."


def batch_summary(results: list[dict[str, Any] | None], wall: float, max_tokens: int,
                   ignore_eos: bool) -> dict[str, Any]:
    ok_tokens = 0
    failed = 0
    errors: dict[str, int] = {}
    per_request = []
    for r in results:
        r = r or {"error": "no result"}
        bad = "error" in r or not r.get("completion_tokens") or (
            ignore_eos and r.get("completion_tokens", 0) < max_tokens) or "error" in str(r.get("finish_reason"))
        if bad:
            failed += 1
            key = r.get("error") or f"incomplete: {r.get('completion_tokens')} tokens, finish {r.get('finish_reason')}"
            errors[key] = errors.get(key, 0) + 1
        else:
            ok_tokens += r["completion_tokens"]
        per_request.append({k: r.get(k) for k in ("prompt_tokens", "completion_tokens", "ttft_s", "total_s", "error")})
    return {"wall_s": wall, "requests": len(results), "failed": failed, "completion_tokens": ok_tokens,
            "aggregate_tok_s": ok_tokens / wall if wall > 0 else None, "errors": errors, "per_request": per_request}
