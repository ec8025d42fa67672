"""Speculative decoding on the real SmolLM2 GGUF: greedy outputs equal plain decoding on many
prompts (copy-heavy and free text), and verify rows are bit-identical to decode steps."""

from __future__ import annotations

import pytest
import torch

from agentkit import Runner, Which
from agentkit.plugins.speculative import SpeculativePlugin
from agentkit.testing.speculation import ProposerPlugin, Recorder, ask, run_all, score_decode_and_verify

pytestmark = pytest.mark.slow

PROMPTS = [
    "Write a short poem about the sea.",
    "Explain what a hash table is in two sentences.",
    "Repeat exactly: the cat sat on the mat, the cat sat on the mat, the dog sat on the log.",
    'Here is a tool result: {"city": "Paris", "temp_c": 21, "sky": "clear"}. Repeat the JSON with temp_c set to 22.',
    "List the numbers from one to twenty in words, separated by commas.",
    "def add(a, b):\n    return a + b\n\nRename add to plus and output the code.",
    "Why is the sky blue? Explain simply.",
    "Quote this sentence twice: Knowledge is power, and power is responsibility.",
]


def _ids(responses) -> list[list[int]]:
    return [[lp.top_logprobs[0].token for lp in r.choices[0].logprobs.content] for r in responses]


def test_smollm2_greedy_equals_plain(smollm2, monkeypatch):
    import agentkit.engine.speculative.verify as verify

    which = Which.GGUF(*smollm2, None)
    requests = [ask(p, n=32, logprobs=True, top_logprobs=1) for p in PROMPTS]
    # one request at a time: plain batched decoding pads rows to the batch's widest attention, which
    # is itself not bit-identical to a lone step; a lone sequence's verify rows are bit-identical to its
    # decode steps (test_verify_attention.py), so its greedy output must be exactly plain's, near-ties too
    rec = Recorder()
    with Runner(which, progress=False, num_threads=2, plugins=[ProposerPlugin(lambda t: rec)]) as plain:
        expected = _ids(run_all(plain, requests, concurrent=False))
        for forced in (False, True):
            if forced:  # draft the most tokens every step: the hardest case for exactness
                monkeypatch.setattr(verify, "plan_lengths", lambda rates, caps, *a, **k: list(caps))
            with Runner(which, progress=False, num_threads=2, plugins=[SpeculativePlugin(mode="ngram")]) as spec:
                got = _ids(run_all(spec, requests, concurrent=False))
                stats = spec.served_model().engine.speculation.stats
            # adaptive k may measure that drafting does not pay on this machine right now; forced must draft
            assert stats.accepted > 0 or not forced, stats
            for i, (g, e) in enumerate(zip(got, expected)):
                if g == e:
                    continue
                # the plain logits' top-2 gap there, for the report (not an excuse)
                j = next(n for n, (a, b) in enumerate(zip(g, e)) if a != b)
                final = next(f for f in rec.finals if f[len(f) - len(e):] == e)
                prefix = final[: len(final) - len(e) + j]
                logits = plain.served_model().engine.call(
                    lambda prefix=prefix: plain.served_model().engine.runner.logits_for(prefix, last=1)).result(120)
                top2 = logits[0].float().topk(2).values
                gap = float(top2[0] - top2[1])
                pytest.fail(f"prompt {i} differs at token {j} (forced={forced}); plain top-2 logit gap {gap}")


def test_smollm2_verify_rows_are_bit_identical_to_decode_steps(smollm2):
    with Runner(Which.GGUF(*smollm2, None), progress=False, num_threads=2,
                plugins=[SpeculativePlugin(mode="off")]) as r:
        engine = r.served_model().engine
        ids = engine.tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 12)[:120]
        one, many = score_decode_and_verify(engine, ids, 111)
    assert torch.equal(one, many)


def test_smollm2_verify_rows_equal_decode_steps_along_a_whole_answer(smollm2):
    """A greedy answer decoded one token per step, then re-scored in verify chunks of 1 + k rows
    (every draft accepted): every row's attention output in every layer, and its logits, are
    bit-identical to its plain step's, for several k (chunks cross block boundaries at different
    offsets; 2 threads, where torch's SDPA gives a row in a batch of several other bits than alone).
    The attention outputs make the test sensitive: most last-bit differences vanish in the packed
    kernels' bf16 rounding of the activations and only sometimes reach the logits."""
    from agentkit.engine.model_runner import BatchItem
    from agentkit.engine.params import SamplingParams
    from agentkit.engine.sequence import EngineRequest, Sequence

    n_new, ks = 40, (1, 4, 10)
    with Runner(Which.GGUF(*smollm2, None), progress=False, num_threads=2, prefix_cache_n=0,
                plugins=[SpeculativePlugin(mode="off")]) as r:
        engine = r.served_model().engine
        prompt = engine.tokenizer.encode("Write a short poem about the sea.\n\nThe sea")
        layers = engine.runner.model.layers
        seen: list[list[torch.Tensor]] | None = None

        def keep(i: int):
            def hook(module, args, out):
                if seen is not None:
                    seen[i].append(args[0].detach().clone())
            return hook

        hooks = [layer.self_attn.o.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]

        def new_seq(ids: list[int]) -> Sequence:
            s = Sequence(request=EngineRequest("x", ids[: len(prompt)], SamplingParams()), index=0,
                         token_ids=list(ids), num_prompt=len(prompt), max_tokens=len(ids))
            engine.blocks.allocate(s, fresh_only=True)
            engine.blocks.reserve(s, len(ids) + 1)
            return s

        def rows_of(chunks: list[torch.Tensor], attn: list[list[torch.Tensor]]) -> torch.Tensor:
            return torch.cat([torch.cat(chunks)] + [torch.cat(a) for a in attn], dim=-1)  # [rows, V + L * D]

        def run() -> dict[int, list[int]]:
            nonlocal seen
            runner, n0 = engine.runner, len(prompt)
            ids = list(prompt)
            s = new_seq(ids + [0] * n_new)
            ids.append(int(runner.execute([BatchItem(s, 0, n0, True)]).argmax()))
            seen, plain = [[] for _ in layers], []
            for p in range(n0, n0 + n_new - 1):
                s.token_ids[p] = ids[p]
                plain.append(runner.execute([BatchItem(s, p, 1, True)]))
                ids.append(int(plain[-1].argmax()))
            engine.blocks.free_seq(s, finished=False)
            plain_rows, differing = rows_of(plain, seen), {}
            for k in ks:
                s = new_seq(ids)
                seen = None
                runner.execute([BatchItem(s, 0, n0, False)])
                seen, rows, p = [[] for _ in layers], [], n0
                while p < len(ids) - 1:
                    kk = min(k, len(ids) - 2 - p)
                    rows.append(runner.execute([BatchItem(s, p, 1, True, tuple(ids[p + 1 : p + 1 + kk]))]))
                    p += kk + 1
                engine.blocks.free_seq(s, finished=False)
                differing[k] = (rows_of(rows, seen) != plain_rows).any(-1).nonzero().flatten().tolist()
            seen = None
            return differing

        differing = engine.call(run).result(600)
        for h in hooks:
            h.remove()
    assert all(not rows for rows in differing.values()), f"rows differing from plain steps, per k: {differing}"
