"""EngineConfig: the knobs of one loaded model's engine (batching, cache, threads, device).

Values only; the Runner builds it from its keyword arguments. Not covered: model loading options
(see `agentkit.engine.loading.loader`) and request-level sampling (see `agentkit.engine.sampling`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class EngineConfig:
    """Scheduling and runtime options for one engine.

    `max_seqs` caps concurrently running sequences (continuous batching); `max_batch_tokens` caps
    the tokens fed to one forward pass (prompts longer than that are prefilled in chunks);
    `max_seq_len` defaults to the model's context length; `num_threads` pins torch's intra-op
    threads (None = `default_threads()`: one less than the available CPUs); `seed` seeds the engine RNG that gives unseeded
    sampled requests their per-sequence seeds, so a process is reproducible; `request_timeout_s` is
    the default deadline of every request (None: no deadline); `overlap_grammar_masks=False`
    computes grammar masks before the forward instead of beside it (the baseline of
    bench/grammar.py; read at each step).
    """

    max_seqs: int = 16
    max_batch_tokens: int = 2048
    max_seq_len: int | None = None
    no_kv_cache: bool = False
    prefix_cache_n: int = 16
    num_threads: int | None = None
    device: str | None = None
    seed: int = 0
    block_size: int = 32
    cache_type: str = "auto"
    kv_ctxt_len: int | None = None
    kv_mem_usage: float | None = None
    kv_mem_mb: int | None = None
    memory_goal: str | float | None = None
    paged_attn: bool | None = None
    request_timeout_s: float | None = None
    overlap_grammar_masks: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.max_seqs, int) or self.max_seqs < 1:
            raise ValueError(f"max_seqs must be a positive integer, got {self.max_seqs!r}")
        if not isinstance(self.max_batch_tokens, int) or self.max_batch_tokens < 16:
            raise ValueError(f"max_batch_tokens must be an integer >= 16, got {self.max_batch_tokens!r}")
        if self.max_seq_len is not None and (not isinstance(self.max_seq_len, int) or self.max_seq_len < 2):
            raise ValueError(f"max_seq_len must be an integer >= 2, got {self.max_seq_len!r}")
        if not isinstance(self.prefix_cache_n, int) or self.prefix_cache_n < 0:
            raise ValueError(f"prefix_cache_n must be a non-negative integer, got {self.prefix_cache_n!r}")
        if self.block_size not in (8, 16, 32):
            raise ValueError(f"pa_blk_size must be 8, 16 or 32, got {self.block_size!r}")
        if self.cache_type not in ("auto", "f8e4m3"):
            raise ValueError(f"pa_cache_type must be PagedCacheType.Auto or F8E4M3, got {self.cache_type!r}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or None, got {self.num_threads!r}")
        t = self.request_timeout_s
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0):
            raise ValueError(f"request_timeout_secs must be a positive number of seconds or None, got {t!r}")
        self._check_kv_budget()

    def _check_kv_budget(self) -> None:
        """The KV budget errors that do not need the model, raised before any weights load."""
        ctxt = self.kv_ctxt_len
        if ctxt is not None:
            if not isinstance(ctxt, int) or isinstance(ctxt, bool) or ctxt < self.block_size:
                raise ValueError(f"pa_ctxt_len must be an integer >= the block size ({self.block_size}), got {ctxt!r}")
            if self.max_seq_len is not None and ctxt < self.max_seq_len:
                raise ValueError(f"pa_ctxt_len={ctxt} cannot hold one sequence of max_seq_len={self.max_seq_len}: "
                                 "raise pa_ctxt_len or lower max_seq_len")
        usage = self.kv_mem_usage
        if usage is not None and (isinstance(usage, bool) or not isinstance(usage, (int, float)) or not 0 < usage <= 1):
            raise ValueError(f"pa_gpu_mem_usage must be a fraction in (0, 1], got {usage!r}")
        mb = self.kv_mem_mb
        if mb is not None and (isinstance(mb, bool) or not isinstance(mb, (int, float)) or mb <= 0):
            raise ValueError(f"pa_gpu_mem must be a positive number of megabytes, got {mb!r}")
        goal = self.memory_goal
        if goal is None:
            return
        if isinstance(goal, (int, float)) and not isinstance(goal, bool):
            if not 0 < float(goal) <= 1:
                raise ValueError(f"memory_goal as a number is a fraction in (0, 1], got {goal!r}")
            return
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]+)\s*", str(goal))
        units = ("tokens", "token", "tok", "b", "kb", "mb", "gb", "kib", "mib", "gib")
        if not isinstance(goal, str) or not m or m.group(2).lower() not in units:
            raise ValueError(f"memory_goal {goal!r} is not understood: use 0.9, '4GiB', '512MB' or '65536tokens'")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EngineConfig:
        """Build from a superset of keyword arguments, ignoring names that are not fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in kwargs.items() if k in names and v is not None})

    def resolved_threads(self) -> int:
        """The intra-op thread count to use: the configured one, else `default_threads()`."""
        if self.block_size not in (8, 16, 32):
            raise ValueError(f"pa_blk_size must be 8, 16 or 32, got {self.block_size!r}")
        if self.cache_type not in ("auto", "f8e4m3"):
            raise ValueError(f"pa_cache_type must be PagedCacheType.Auto or F8E4M3, got {self.cache_type!r}")
        if self.num_threads is not None:
            return self.num_threads
        return default_threads()


def default_threads() -> int:
    """One thread less than the CPUs this process may use (at least 1).

    torch's OpenMP team synchronises thousands of times per decode step, so when another process
    takes one of its cores every step waits on the descheduled thread. On the project's 2-core
    machine, shared with other processes, 1 thread gave 4-6x the aggregate tok/s of 2
    (`bench/concurrency.py threads`); an idle machine should be up to 2x faster with every core
    (an estimate: it was never idle to measure): pass `num_threads` on a dedicated machine.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)
