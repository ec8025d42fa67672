"""Engine: one loaded model served by its own thread with continuous batching.

Callers (any thread) `submit` a tokenized `EngineRequest` and read `RequestOutput` events from
its queue. The engine thread loops: admit new requests (and end cancelled or expired ones),
schedule a batch (`Scheduler`), run the model once, sample, postprocess (the scheduler appends
tokens and finishes sequences; each sequence's `IncrementalDetokenizer` finds stop strings and
makes the text deltas) and publish. A failure inside a step fails only the requests that caused
it; the engine keeps serving.

Constrained decoding: a request with a `Grammar` gets one matcher per sequence at admission.
Each step the allowed-token masks of the constrained rows are computed while the forward runs
and applied to those rows only; the sampled token is then consumed (`agentkit.engine.grammar_step`,
whose outcomes the loop applies). EOS is masked until the grammar accepts; a completed grammar
ends its sequence with "stop". Unconstrained batches skip all of it.

Speculative decoding (`enable_speculation`, agentkit.engine.speculative): after scheduling, the
`Speculation` controller attaches draft tokens to decode items; after the forward it verifies
them and hands the remaining rows back to the plain sampling path. Without a proposer nothing
changes.

Not covered: chat templates, tool calls and response objects (the Runner's job).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch

from agentkit.engine.config import EngineConfig
from agentkit.engine.grammar_step import GrammarOutcome, GrammarStep
from agentkit.engine.model_runner import BatchItem, ModelRunner
from agentkit.engine.sampling import SampleRow, dry_breaker_ids, make_generator, sample
from agentkit.engine.scheduler import Scheduler
from agentkit.engine.sequence import EngineRequest, RequestOutput, SeqDelta, Sequence
from agentkit.engine.speculative.protocol import DraftProposer
from agentkit.engine.speculative.verify import Speculation
from agentkit.engine.swap import SwapSpace
from agentkit.engine.tokenizer import IncrementalDetokenizer, Tokenizer

log = logging.getLogger("agentkit.engine")

_live_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    # Engine threads run torch (OpenMP) code; letting the interpreter tear them down mid-call
    # aborts the process ("terminate called without an active exception").
    for engine in list(_live_engines):
        engine.shutdown()

_DEFAULT_BREAKERS = ("\n", ":", '"', "*")


@dataclass(slots=True)
class _Call:
    """A function to run on the engine thread between steps (`Engine.call`)."""

    fn: Callable[[], Any]
    future: Future[Any]

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            self.future.set_result(self.fn())
        except BaseException as exc:  # delivered to the caller; the engine keeps serving
            self.future.set_exception(exc)


class Engine:
    """Serves one model: thread-safe `submit`, background stepping, per-request output queues."""

    def __init__(self, runner: ModelRunner, tokenizer: Tokenizer, config: EngineConfig, *,
                 eos_token_ids: set[int], name: str = "model", start: bool = True) -> None:
        self.runner = runner
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.max_seq_len = config.max_seq_len or runner.max_seq_len
        self.eos_token_ids = set(eos_token_ids)
        prefix_n = config.prefix_cache_n if runner.supports_prefix_cache and not config.no_kv_cache else 0
        swap = None if config.no_kv_cache else SwapSpace(runner, runner.pool_nbytes())
        self.scheduler = Scheduler(config.max_seqs, config.max_batch_tokens, num_blocks=runner.num_blocks,
                                   block_size=runner.block_size, prefix_cache_n=prefix_n,
                                   max_seq_len=self.max_seq_len, eos_token_ids=self.eos_token_ids, swap=swap)
        self.blocks = self.scheduler.blocks
        self._inbox: queue.Queue[EngineRequest | _Call | None] = queue.Queue()
        self._active: dict[str, EngineRequest] = {}
        self._rng = torch.Generator().manual_seed(config.seed)
        self._breakers: dict[tuple[str, ...], frozenset[int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._grammar = GrammarStep()
        self.grammar_stats = self._grammar.stats
        self.num_steps = 0  # forward passes run (tests count steps instead of timing)
        self.speculation: Speculation | None = None  # set by enable_speculation
        self.clock: Callable[[], float] = time.monotonic  # deadlines; replaceable (tests drive it by step)
        _live_engines.add(self)
        if start:
            self._thread = threading.Thread(target=self.serve, name=f"agentkit-engine-{name}", daemon=True)
            self._thread.start()

    def enable_speculation(self, proposer: DraftProposer, calibrate: bool = True) -> bool:
        """Verify `proposer`'s drafts from now on (call before serving, on the serving thread);
        False when this engine cannot speculate (transformers fallback runner, no KV cache)."""
        if self.runner.kind != "native" or self.config.no_kv_cache:
            log.info("speculative decoding is off for %r: it needs the native runner and a KV cache", self.name)
            return False
        self.speculation = Speculation(proposer, self.runner, self.blocks, max_batch_tokens=self.config.max_batch_tokens,
                                       max_seq_len=self.max_seq_len, make_row=self._sample_row,
                                       postprocess=self.scheduler.postprocess)
        if calibrate:
            self.speculation.calibrate()
        return True

    # ---- public, any thread -------------------------------------------------------------------
    def submit(self, req: EngineRequest) -> EngineRequest:
        """Queue a request; its events arrive on `req.outputs`.

        Its deadline starts now: `req.timeout_s`, else the engine's `request_timeout_s` (None: none).
        A request still running at its deadline ends with an error event (`timed_out`)."""
        if self._stop.is_set():
            raise RuntimeError(f"engine for {self.name!r} is shut down")
        if req.timeout_s is None:
            req.timeout_s = self.config.request_timeout_s
        if req.timeout_s is not None:
            req.deadline = self.clock() + req.timeout_s
        self._inbox.put(req)
        return req

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn()` on the engine thread between two steps (after the requests submitted before
        it are admitted); its result or exception lands in the returned Future."""
        if self._stop.is_set():
            raise RuntimeError(f"engine for {self.name!r} is shut down")
        call = _Call(fn, Future())
        self._inbox.put(call)
        return call.future

    def drop_prefix_cache(self) -> int:
        """Forget the prefix cache (after a weight swap: cached KV was computed by the old weights).
        Call it on the engine thread (`call(engine.drop_prefix_cache)`); returns the entries dropped."""
        return self.scheduler.blocks.drop_prefix_cache()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the thread; pending requests end with an error event. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._inbox.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def serving(self) -> bool:
        """Whether the engine thread is running (False before `serve` and after it ended)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def num_active(self) -> int:
        """Requests admitted and not yet finished (for tests and status)."""
        return len(self._active)

    # ---- engine thread --------------------------------------------------------------------------
    def serve(self) -> None:
        """Run the engine loop in the calling thread until `shutdown` (`start=False` engines).

        Torch work for one model should stay on one OS thread: OpenMP keeps a thread team per
        calling thread, and two teams on a small machine (one left over from loading in another
        thread) made decode 2.5x slower here. `agentkit.models.local` loads the model in the same
        thread that then serves it.
        """
        if self._thread is None:
            self._thread = threading.current_thread()
        # OpenMP thread counts are per calling thread: pin this one's deliberately
        torch.set_num_threads(self.config.resolved_threads())
        while not self._stop.is_set():
            self._drain(block=not self.scheduler.has_work())
            if self._stop.is_set():
                break
            self._iterate()
        for req in list(self._active.values()):
            self._fail(req, "engine shut down")
        while not self._inbox.empty():  # calls queued behind the shutdown never run: say so
            item = self._inbox.get_nowait()
            if isinstance(item, _Call):
                item.future.set_exception(RuntimeError(f"engine for {self.name!r} is shut down"))
        self._grammar.shutdown()

    def step(self) -> None:
        """One engine iteration without waiting, for `start=False` engines driven by hand (tests):
        take queued requests, end cancelled and expired ones, run one batch."""
        self._drain(block=False)
        self._iterate()

    def _iterate(self) -> None:
        self._reap()
        if self.scheduler.has_work():
            self._step_guarded()
            self.num_steps += 1

    def _drain(self, block: bool) -> None:
        try:
            item = self._inbox.get(timeout=0.5) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            if isinstance(item, _Call):
                item.run()
            elif item is not None:
                self._admit(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _admit(self, req: EngineRequest) -> None:
        if req.cancelled:
            return
        if self.blocks.blocks_needed(len(req.prompt_ids) + 1) > self.blocks.num_blocks:
            req.outputs.put(RequestOutput(req.request_id, [], finished=True, error=(
                f"the prompt ({len(req.prompt_ids)} tokens) does not fit in the KV cache of "
                f"{self.blocks.num_blocks * self.blocks.block_size} tokens; raise pa_ctxt_len or memory_goal")))
            return
        matchers: list[Any] = [None] * req.n
        if req.grammar is not None:
            error = None
            if req.grammar.tokenizer is not self.tokenizer:
                error = (f"the request's grammar was compiled for another tokenizer than {self.name!r}'s; "
                         "compile it with this model's tokenizer")
            else:
                try:
                    matchers = [req.grammar.new_matcher() for _ in range(req.n)]
                except Exception as exc:  # never let one request take the engine thread down
                    error = f"constrained decoding failed: {type(exc).__name__}: {exc}"
            if error is not None:
                req.outputs.put(RequestOutput(req.request_id, [], finished=True, error=error))
                return
        limit = self.max_seq_len - len(req.prompt_ids)
        max_tokens = min(req.params.max_tokens or limit, limit)
        p = req.params
        for i in range(req.n):
            gen = None
            if not p.is_greedy:
                seed = p.seed + i if p.seed is not None else int(torch.randint(2**62, (1,), generator=self._rng))
                gen = make_generator(seed, self.runner.device)
            seq = Sequence(request=req, index=i, token_ids=list(req.prompt_ids), num_prompt=len(req.prompt_ids),
                           max_tokens=max_tokens, generator=gen,
                           detok=IncrementalDetokenizer(self.tokenizer, skip_special_tokens=not req.keep_special_tokens,
                                                        stop=p.stop_seqs),
                           matcher=matchers[i])
            req.seqs.append(seq)
            self.scheduler.add(seq)
        self._active[req.request_id] = req

    def _reap(self) -> None:
        """End cancelled requests (finish_reason "canceled") and those past their deadline (an error)."""
        now = self.clock()
        for req in list(self._active.values()):
            if req.cancelled:
                for s in req.seqs:
                    if not s.is_finished:
                        s.finish_reason = "canceled"
                        self._release(s)
                self._publish(req, [], finished=True)
            elif req.deadline is not None and now >= req.deadline:
                generated = sum(s.num_generated for s in req.seqs)
                self._fail(req, f"the request timed out after {req.timeout_s:g} s (timeout_secs) with {generated} "
                                "tokens generated; raise the timeout or lower max_tokens", timed_out=True)

    def _step_guarded(self) -> None:
        items = self.scheduler.schedule()
        for s in self.scheduler.overflowed:
            self._publish(s.request, [s], finished=all(x.finish_reason is not None for x in s.request.seqs))
        self.scheduler.overflowed.clear()
        if not items:
            return
        if self.speculation is not None:
            self.speculation.draft(items)
        try:
            self._step(items)
        except Exception as exc:  # isolate the failing request(s); the engine keeps serving
            log.exception("engine step failed; retrying requests one by one")
            by_req: dict[str, list[BatchItem]] = {}
            for it in items:
                by_req.setdefault(it.seq.request.request_id, []).append(it)
            if len(by_req) == 1:
                self._fail(items[0].seq.request, f"{type(exc).__name__}: {exc}")
                return
            for group in by_req.values():
                try:
                    self._step(group)
                except Exception as inner:
                    self._fail(group[0].seq.request, f"{type(inner).__name__}: {inner}")

    def _step(self, items: list[BatchItem]) -> None:
        now = time.perf_counter()
        for it in items:
            if it.seq.t_start is None:
                it.seq.t_start = now
        constrained = [it.seq for it in items if it.need_logits and it.seq.matcher is not None]
        job = self._grammar.start(constrained, self.config.overlap_grammar_masks) if constrained else None
        try:
            logits = self.runner.execute(items)  # [n_logit_rows, V]; the masks are computed meanwhile
        finally:
            masks = self._grammar.masks(job) if job is not None else None  # before any retry touches matchers
        self.scheduler.computed(items)
        sampled = [it.seq for it in items if it.need_logits]
        verified: list[Sequence] = []
        if self.speculation is not None:
            logits, sampled, verified = self.speculation.verify(items, logits, sampled)
        if not sampled and not verified and not (self.speculation and self.speculation.failed):
            return
        pre = GrammarOutcome() if masks is None else self._grammar.outcome(constrained, masks)
        for s in pre.stopped:
            s.finish_reason = "stop"
        if masks is not None:
            sampled, logits = pre.to_sample(sampled, logits)
        rows = [SampleRow(params=s.params, token_ids=s.token_ids, generator=s.generator,
                          dry_breakers=self._dry_breakers(s), allowed_token_mask=pre.allowed.get(s.seq_id))
                for s in sampled]
        results = sample(logits, rows) if sampled else []
        self.scheduler.postprocess(sampled, results, time.perf_counter())
        post = self._grammar.advance(sampled) if constrained else GrammarOutcome()
        for s in post.stopped:
            s.finish_reason = "stop"
        failed = pre.failed | {rid: f for rid, f in post.failed.items() if rid not in pre.failed}
        if self.speculation is not None:
            failed |= {rid: f for rid, f in self.speculation.failed.items() if rid not in failed}
        by_req: dict[str, list[Sequence]] = {}
        for s in pre.stopped + sampled + verified:
            by_req.setdefault(s.request.request_id, []).append(s)
        for rid, (req, message) in failed.items():
            by_req.pop(rid, None)
            self._fail(req, message)
        for seqs in by_req.values():
            req = seqs[0].request
            self._publish(req, seqs, finished=all(x.finish_reason is not None for x in req.seqs))
        if self.config.no_kv_cache:  # recompute the whole context next step
            for s in sampled:
                if s.finish_reason is None:
                    self.scheduler.preempt(s, swap=False)

    def _sample_row(self, s: Sequence, token_ids: list[int]) -> SampleRow:
        """The sample row of `s` at the position after `token_ids` (a speculative verify row)."""
        return SampleRow(params=s.params, token_ids=token_ids, generator=s.generator,
                         dry_breakers=self._dry_breakers(s))

    def _dry_breakers(self, s: Sequence) -> frozenset[int]:
        if s.params.dry_multiplier is None:
            return frozenset()
        key = tuple(s.params.dry_sequence_breakers or _DEFAULT_BREAKERS)
        if key not in self._breakers:
            self._breakers[key] = dry_breaker_ids(key, self.tokenizer.token_strings())
        return self._breakers[key]

    def _publish(self, req: EngineRequest, seqs: list[Sequence], finished: bool) -> None:
        deltas = []
        for s in seqs:
            deltas.append(SeqDelta(s.index, s.detok.take_delta(s.finish_reason is not None), s.pending_ids,
                                   s.pending_samples, s.finish_reason, s.stop_sequence))
            s.pending_ids, s.pending_samples = [], []
            if s.finish_reason is not None:
                s.t_finish = time.perf_counter()
                self._release(s)
        out = RequestOutput(req.request_id, deltas, finished=finished)
        if finished:
            self._fill_usage(req, out)
            self._active.pop(req.request_id, None)
        req.outputs.put(out)

    def _fill_usage(self, req: EngineRequest, out: RequestOutput) -> None:
        out.prompt_tokens = len(req.prompt_ids)
        out.cached_tokens = max((s.num_cached_tokens for s in req.seqs), default=0)
        out.completion_tokens = sum(s.num_generated for s in req.seqs)
        specs = [s.spec for s in req.seqs if s.spec is not None]
        out.drafted_tokens = sum(a.drafted for a in specs)
        out.accepted_tokens = sum(a.accepted for a in specs)
        out.verify_steps = sum(a.steps for a in specs)
        firsts = [s.t_first_token for s in req.seqs if s.t_first_token is not None]
        ends = [s.t_finish for s in req.seqs if s.t_finish is not None]
        if firsts:
            out.prompt_time_s = min(firsts) - req.arrival_time
            out.completion_time_s = max(max(ends, default=min(firsts)) - min(firsts), 0.0)

    def _release(self, s: Sequence) -> None:
        if self.speculation is not None:
            self.speculation.release(s)
        self.scheduler.remove(s)
        self.runner.free(s)

    def _fail(self, req: EngineRequest, message: str, timed_out: bool = False) -> None:
        for s in req.seqs:
            if not s.is_finished:
                self._release(s)
        self._active.pop(req.request_id, None)
        req.outputs.put(RequestOutput(req.request_id, [], finished=True, error=message, timed_out=timed_out))
