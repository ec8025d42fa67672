"""Verify rows attend exactly like plain decode steps, whatever torch's thread count.

torch's CPU SDPA splits a call's (row, head) pairs over its threads, and a pair computed on a
worker thread gets other last bits than on the calling thread (torch 2.13: with 2 threads, a batch
of 2 rows gives row 0 the 1-thread bits and row 1 other ones; a lone row's heads 5-8 differ), so a
row's attention bits depend on the call's batch size. These tests run the real `NativeRunner.execute` (batch metadata, `_decode_groups`) and the real
`LlamaAttention._attend` over a paged pool of fixed random K/V, with a stub model whose queries
are a fixed random function of the position: the only difference between a plain decode step and
a verify row is then how the runner batches the attention.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from agentkit.engine.kv_cache import KVPool, KVSpec
from agentkit.engine.model_runner import BatchItem, NativeRunner
from agentkit.engine.models.llama import LlamaAttention

NH, NKV, D, BS, CTX = 9, 3, 64, 32, 160  # SmolLM2-135M's attention shape; 5 blocks of 32


class _AttentionOnly:
    """A stand-in model: queries from a fixed table by position, one attention layer, no linears."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        cfg = SimpleNamespace(hidden_size=NH * D, num_attention_heads=NH, num_key_value_heads=NKV, rms_norm_eps=1e-5)
        self.attn = LlamaAttention(cfg, 0, D, qkv_bias=False, qk_norm=False)
        self.q = torch.randn(CTX + 16, NH, D, generator=gen)
        self.pool = KVPool(KVSpec(1, NKV, D, torch.float32, torch.device("cpu")), 8, BS)
        self.pool.k.copy_(torch.randn(self.pool.k.shape, generator=gen))
        self.pool.v.copy_(torch.randn(self.pool.v.shape, generator=gen))

    def forward_batch(self, ids, positions, pool, meta, rows):
        return self.attn._attend(self.q[positions], self.pool, meta)[rows]


def _runner(model: _AttentionOnly) -> NativeRunner:
    runner = NativeRunner.__new__(NativeRunner)  # only what execute() reads
    runner.model, runner.pool, runner.block_size, runner.device = model, model.pool, BS, torch.device("cpu")
    return runner


def _seq(table: list[int]) -> SimpleNamespace:
    return SimpleNamespace(token_ids=[7] * (CTX + 16), block_table=table)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("num_threads", [2, 3])
def test_a_lone_sequences_verify_rows_equal_its_decode_steps(threads, num_threads):
    threads(num_threads)
    model = _AttentionOnly()
    runner, seq = _runner(model), _seq([3, 0, 6, 1, 5])
    plain = torch.cat([runner.execute([BatchItem(seq, p, 1, True)]) for p in range(20, CTX)])
    for k in (1, 3, 6, 10):
        rows, p = [], 20
        while p < CTX:
            kk = min(k, CTX - 1 - p)
            rows.append(runner.execute([BatchItem(seq, p, 1, True, tuple(range(kk)))]))
            p += kk + 1
        verify = torch.cat(rows)
        differ = (verify != plain).any(-1).nonzero().flatten().tolist()
        assert not differ, f"k={k}, {num_threads} threads: rows at positions {[20 + i for i in differ]} differ"


def test_several_sequences_verify_rows_are_all_scored(threads):
    """With several decoding sequences, rows share a call per width (a plain step of several
    sequences is not bit-reproducible anyway): every row is still scored once, like a decode step."""
    threads(2)
    model = _AttentionOnly()
    runner, a, b = _runner(model), _seq([3, 0, 6, 1, 5]), _seq([2, 4, 7])
    alone = [runner.execute([BatchItem(s, p, 1, True)]) for s, p in ((a, 60), (a, 61), (a, 62), (a, 63), (a, 64),
                                                                     (b, 90), (b, 91))]
    got = runner.execute([BatchItem(a, 60, 1, True, (0, 0, 0, 0)), BatchItem(b, 90, 1, True, (0,))])
    torch.testing.assert_close(got, torch.cat(alone), rtol=1e-5, atol=1e-6)
