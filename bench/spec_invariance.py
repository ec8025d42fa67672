"""Are speculative verify rows bit-identical to plain decode steps on SmolLM2, along a whole answer?

Usage: python bench/spec_invariance.py [--case sea_poem] [--ks 1,3,6,10] [--max-tokens 160]

Decodes a bench/spec_prompts.py case greedily one token per step (the plain path), then re-scores
the same tokens in verify chunks of 1 + k rows (every draft accepted, the way a copying request
speculates) and compares every row's logits with the plain step's. Prints, per k, how many rows
differ, the largest difference, and the first row whose argmax flips with the plain top-2 logit
gap there (a flip at a gap of ~0 is a near-tie; a flip at a clear gap is an exactness bug).
Not timed; any machine load is fine. Keep --threads at 2 or more: with one thread torch's CPU
attention gives every row the same bits whatever the batch, which would hide a regression.

Non-goals: batches of several sequences, sampling, the transformers fallback runner.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from spec_prompts import CASES  # noqa: E402

from agentkit import ChatCompletionRequest, Runner, Which  # noqa: E402
from agentkit.engine.model_runner import BatchItem  # noqa: E402
from agentkit.engine.params import SamplingParams  # noqa: E402
from agentkit.engine.sequence import EngineRequest, Sequence  # noqa: E402
from agentkit.testing import smollm2_gguf  # noqa: E402
from agentkit.testing.speculation import ProposerPlugin, Recorder  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="sea_poem", choices=list(CASES))
    ap.add_argument("--ks", default="1,3,6,10")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    class PromptRecorder(Recorder):  # never drafts; keeps the chat-templated prompt ids
        def finished(self, ctx) -> None:
            self.finals.append(list(ctx.token_ids[: ctx.num_prompt]))

    rec = PromptRecorder()
    with Runner(Which.GGUF(*smollm2_gguf(), None), progress=False, num_threads=args.threads, prefix_cache_n=0,
                plugins=[ProposerPlugin(lambda t: rec)]) as r:
        engine = r.served_model().engine
        r.send_chat_completion_request(ChatCompletionRequest(messages=CASES[args.case], model="default", max_tokens=2))
        prompt = rec.finals[-1]

        def new_seq(ids: list[int], n0: int) -> Sequence:
            s = Sequence(request=EngineRequest("x", ids[:n0], SamplingParams()), index=0, token_ids=list(ids),
                         num_prompt=n0, max_tokens=len(ids))
            engine.blocks.allocate(s, fresh_only=True)
            engine.blocks.reserve(s, len(ids) + 1)
            return s

        def run() -> None:
            runner = engine.runner
            ids, n0 = list(prompt), len(prompt)
            s = new_seq(ids + [0] * args.max_tokens, n0)
            rows = [runner.execute([BatchItem(s, 0, n0, True)])]
            ids.append(int(rows[-1].argmax(-1)[0]))
            for p in range(n0, n0 + args.max_tokens - 1):
                s.token_ids[p] = ids[p]
                rows.append(runner.execute([BatchItem(s, p, 1, True)]))
                ids.append(int(rows[-1].argmax(-1)[0]))
            engine.blocks.free_seq(s, finished=False)
            plain = torch.cat(rows).float()  # row i predicts ids[n0 + i]
            top2 = plain.topk(2, -1).values
            gaps = top2[:, 0] - top2[:, 1]
            print(f"{args.case}: {len(ids) - n0} tokens; smallest plain top-2 gap {float(gaps.min()):.4g}")
            for k in [int(x) for x in args.ks.split(",") if x]:
                s = new_seq(ids, n0)
                out = [runner.execute([BatchItem(s, 0, n0, True)])]
                p = n0
                while p < len(ids) - 1:
                    kk = min(k, len(ids) - 2 - p)
                    out.append(runner.execute([BatchItem(s, p, 1, True, tuple(ids[p + 1 : p + 1 + kk]))]))
                    p += kk + 1
                engine.blocks.free_seq(s, finished=False)
                v = torch.cat(out).float()
                diff = (v - plain).abs().max(-1).values
                flips = [i for i in range(len(v)) if int(v[i].argmax()) != int(plain[i].argmax())]
                first = f"first argmax flip at row {flips[0]} (plain gap {float(gaps[flips[0]]):.4g})" if flips else "no flip"
                print(f"k={k:2d}: {int((diff > 0).sum())}/{len(v)} rows differ, max |diff| {float(diff.max()):.4g}, {first}")

        engine.call(run).result(1800)
    return 0


if __name__ == "__main__":
    sys.exit(main())
