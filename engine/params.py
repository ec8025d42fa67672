"""SamplingParams and SampleResult: the torch-free values of sampling one sequence.

Scope: request sampling parameters (validation, generation_config defaults) and the per-token
result the engine publishes (chosen token, logprob, top alternatives). The chat, agent and any
remote backend build and read these without importing torch.

Non-goals: the sampler itself (`agentkit.engine.sampling`, which re-exports these names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

DRY_DEFAULT_BASE, DRY_DEFAULT_ALLOWED_LENGTH, DRY_MAX_MATCH = 1.75, 2, 50
DRY_DEFAULT_BREAKERS = ("\n", ":", '"', "*")  # applied by the runner via dry_breaker_ids
GREEDY_EPS, MAX_TOP_LOGPROBS = 1e-7, 20


def _check_num(name: str, v, *, integer=False, lo=None, lo_open=False, hi=None) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {what} or None, got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {v!r}")


def _is_id(t) -> bool:
    return isinstance(t, int) and not isinstance(t, bool) and t >= 0


def _check_str_list(name: str, v) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(s, str) and s for s in v):
        raise ValueError(f"{name} must be a list of non-empty strings, got {v!r}")
    return list(v)


@dataclass(slots=True)
class SamplingParams:
    """Sampling parameters of one sequence (reference §1.6/§1.9); ``None`` means unset/off.

    ``top_k <= 0``, ``top_p``/``min_p`` outside (0, 1) and ``repetition_penalty == 1`` are "off".
    DRY is enabled iff ``dry_multiplier`` is set and > 0. ``top_logprobs`` defaults to 1 when
    ``logprobs`` is true. Call :meth:`with_defaults` before sampling to apply generation_config.
    """

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    dry_multiplier: float | None = None
    dry_base: float | None = None
    dry_allowed_length: int | None = None
    dry_sequence_breakers: list[str] | None = None
    logit_bias: dict[int, float] | None = None
    max_tokens: int | None = None
    stop_seqs: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int | None = None
    seed: int | None = None
    suppress_tokens: list[int] | None = None

    def __post_init__(self) -> None:
        _check_num("temperature", self.temperature, lo=0)
        for name in ("top_p", "min_p", "presence_penalty", "frequency_penalty"):
            _check_num(name, getattr(self, name))
        for name in ("top_k", "seed"):
            _check_num(name, getattr(self, name), integer=True)
        _check_num("repetition_penalty", self.repetition_penalty, lo=0, lo_open=True)
        _check_num("dry_multiplier", self.dry_multiplier, lo=0)
        _check_num("dry_base", self.dry_base, lo=0, lo_open=True)
        _check_num("dry_allowed_length", self.dry_allowed_length, integer=True, lo=0)
        self.dry_sequence_breakers = _check_str_list("dry_sequence_breakers", self.dry_sequence_breakers)
        self.stop_seqs = _check_str_list("stop_seqs", self.stop_seqs) or []
        _check_num("max_tokens", self.max_tokens, integer=True, lo=1)
        for name in ("ignore_eos", "logprobs"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.top_logprobs is None and self.logprobs:
            self.top_logprobs = 1
        _check_num("top_logprobs", self.top_logprobs, integer=True, lo=0, hi=MAX_TOP_LOGPROBS)
        bias = self.logit_bias
        if bias is not None and not (isinstance(bias, dict) and all(map(_is_id, bias))):
            raise ValueError(f"logit_bias must be a dict {{token_id (int >= 0): bias}}, got {bias!r}")
        for k, v in (bias or {}).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v == math.inf:
                raise ValueError(f"logit_bias[{k}] must be a finite number or -inf, got {v!r}")
        sup = self.suppress_tokens
        if sup is not None and not (isinstance(sup, (list, tuple)) and all(map(_is_id, sup))):
            raise ValueError(f"suppress_tokens must be a list of token ids (int >= 0), got {sup!r}")
        self.suppress_tokens = None if sup is None else list(sup)

    @property
    def is_greedy(self) -> bool:
        """True when the next token is the argmax (temperature unset or below 1e-7)."""
        return self.temperature is None or self.temperature < GREEDY_EPS

    @property
    def needs_history(self) -> bool:
        """True when an effective penalty or DRY needs the sequence's token history."""
        return bool(
            self.presence_penalty
            or self.frequency_penalty
            or (self.repetition_penalty is not None and self.repetition_penalty != 1.0)
            or self.dry_multiplier
        )

    def with_defaults(self, generation_config: dict | None) -> SamplingParams:
        """Copy with unset fields filled from a HF ``generation_config.json`` dict (§1.9).

        Fills temperature, top_k, top_p, min_p, repetition_penalty, ``max_new_tokens`` ->
        max_tokens and suppress_tokens. An explicit ``do_sample: false`` keeps an unset
        temperature unset (greedy); an absent ``do_sample`` does not.
        """
        gc = generation_config or {}
        keys = {"top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "max_tokens": "max_new_tokens",
                "repetition_penalty": "repetition_penalty", "suppress_tokens": "suppress_tokens"}
        if gc.get("do_sample", True) is not False:
            keys["temperature"] = "temperature"
        updates = {f: gc[k] for f, k in keys.items() if getattr(self, f) is None and gc.get(k) is not None}
        return replace(self, **updates) if updates else self


@dataclass(slots=True)
class SampleResult:
    """The chosen token, its logprob and (only when ``params.logprobs``) the top alternatives."""

    token: int
    logprob: float
    top_logprobs: list[tuple[int, float]] | None
