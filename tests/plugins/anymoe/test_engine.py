"""AnyMoE through the paged varlen engine: routing per sequence, whatever the batch or the cache.

Sequence routing is causal (a token's expert depends on its sequence up to it), so a prompt that
reuses another prompt's cached prefix, routed to other experts, gives exactly what it gives alone
with no prefix cache; and sequences batched together give what each gives alone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from agentkit import AnyMoeConfig, AnyMoeExpertType, ChatCompletionRequest, Runner, Which

LORA = AnyMoeExpertType.LoraAdapter(rank=4, alpha=8.0, target_modules=["gate_proj", "up_proj", "down_proj"])
PREFIX = "The quick brown fox jumps over the lazy dog. " * 3
SUFFIXES = ["def add(a, b): return a + b", "1234567890 12 34 56", "What is the weather in Paris today?"]


def runner(moe_models, dataset, gate, **kw) -> Runner:
    cfg = AnyMoeConfig(hidden_size=moe_models["hidden"], dataset_json=dataset, prefix="model.layers", mlp="mlp",
                       model_ids=moe_models["adapters"], expert_type=LORA, training=False, gate_model_id=gate)
    return Runner(Which.Plain(model_id=moe_models["base"]), progress=False, anymoe_config=cfg, pa_blk_size=8, **kw)


def ask(r: Runner, text: str):
    req = ChatCompletionRequest(model="default", messages=[{"role": "user", "content": text}], max_tokens=10,
                                temperature=0.0, ignore_eos=True)
    return r.send_chat_completion_request(req)


def test_prefix_cache_never_shares_kv_between_differently_routed_sequences(moe_models, dataset, sharp_gate):
    prompts = [PREFIX + s for s in SUFFIXES]
    with runner(moe_models, dataset, sharp_gate, prefix_cache_n=0) as fresh:
        routes = fresh.anymoe_evaluate([(p, 0) for p in prompts]).routes
        alone = [ask(fresh, p).choices[0].message.content for p in prompts]
    assert len({tuple(r) for r in routes}) > 1, routes  # the prompts really are routed differently
    with runner(moe_models, dataset, sharp_gate) as cached:
        got, hits = [], []
        for p in prompts:
            resp = ask(cached, p)
            got.append(resp.choices[0].message.content)
            hits.append(resp.usage.prompt_tokens_details.cached_tokens if resp.usage.prompt_tokens_details else 0)
    assert hits[1] > 0 and hits[2] > 0  # the later prompts reused the first one's prefix blocks
    assert got == alone


def test_batched_sequences_route_as_alone(moe_models, dataset, sharp_gate):
    prompts = [s + " " + PREFIX for s in SUFFIXES] * 2
    with runner(moe_models, dataset, sharp_gate, prefix_cache_n=0) as r:
        alone = [ask(r, p).choices[0].message.content for p in prompts[:3]]
        with ThreadPoolExecutor(6) as pool:
            together = list(pool.map(lambda p: ask(r, p).choices[0].message.content, prompts))
    assert together == alone * 2


def test_decode_keeps_extending_the_prompts_running_mean(moe_models, dataset, sharp_gate):
    """Generated tokens are counted in the load statistics and routed like the prompt's last token
    unless they move the running mean: the load of each layer covers prompt + generated tokens."""
    with runner(moe_models, dataset, sharp_gate) as r:
        r.anymoe_reset_stats()
        resp = ask(r, PREFIX + SUFFIXES[0])
        stats = r.anymoe_routing_stats()
        spec = r.served_model().engine.speculation  # rejected drafts were scored too (test_speculation)
    n = resp.usage.prompt_tokens + resp.usage.completion_tokens - 1  # the last token is never fed back
    n += spec.stats.drafted - spec.stats.accepted if spec is not None else 0
    assert all(s.tokens == n for s in stats.layers)
    assert all(abs(sum(s.load) - 1) < 1e-9 and 0 <= s.entropy <= 1.0987 for s in stats.layers)


def test_the_running_sums_follow_their_blocks_through_swap():
    """The KV pool's aux side channel is copied with K/V when a preempted sequence is swapped out
    and back into other blocks, so its routing resumes exactly where it stopped."""
    from agentkit.engine.kv_cache import KVPool, KVSpec

    spec = KVSpec(2, 1, 4, torch.float32, torch.device("cpu"), aux_layers=3, aux_width=2)
    pool = KVPool(spec, num_blocks=4, block_size=2)
    assert spec.bytes_per_token() == 2 * 2 * 1 * 4 * 4 + 8 * 3 * 2
    pool.aux[:, 2:4] = torch.arange(12).view(3, 2, 2)  # block 1
    saved = pool.copy_out([1])
    pool.aux.zero_()
    pool.copy_in([3], saved)
    assert torch.equal(pool.aux[:, 6:8], torch.arange(12).view(3, 2, 2))
    assert pool.nbytes() == 2 * pool.k.numel() * 4 + pool.aux.numel() * 8
