"""num_device_layers over several devices: pipeline stages, per-stage weights and KV pools.

On a machine without several accelerators, `simulated_devices(("cpu", "cpu"))` gives two ordinals
that are both the CPU: the engine still builds two stages with two separate KV pools, so the
placement, the per-stage pools and the split forward are checked here; real transfers between
devices only by the CUDA tests at the end (skipped without GPUs).
"""

from __future__ import annotations

import threading

import pytest
import torch

from agentkit import ChatCompletionRequest, Runner, Which
from agentkit.engine.kv_cache import KVSpec
from agentkit.engine.kv_stages import StagedKVPool, plan_staged_blocks
from agentkit.engine.loading.device_map import (
    HOST,
    Stage,
    parse_num_device_layers,
    plan_layers,
    simulated_devices,
)
from agentkit.engine.models.llama import AttnMeta, PrefillSlice
from agentkit.errors import NotSupportedError

SPLIT = ("cpu", "cpu")
PROMPTS = ["Tell me about rivers and the sea.", "def add(a, b): return a + b, then explain hash tables"]


def greedy(runner: Runner, prompt: str, n: int = 16) -> list[int]:
    out = runner.send_chat_completion_request(ChatCompletionRequest(
        model="default", messages=[{"role": "user", "content": prompt}], max_tokens=n, ignore_eos=True,
        logprobs=True))
    return [c.top_logprobs[0].token for c in out.choices[0].logprobs.content]


def tensors_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return list(module.parameters()) + list(module.buffers())


def test_plan_groups_layers_into_stages():
    two_gpus = ("cuda:0", "cuda:1")
    plan = plan_layers(parse_num_device_layers(["0:2", "1:1"]), 5, two_gpus)
    assert plan.stages == (Stage("cuda:0", 0, 2, 0), Stage("cuda:1", 2, 3, 1), Stage("cpu", 3, 5, HOST))
    assert plan.single_device is None
    # a CPU-only machine: the leftover layers join ordinal 0, which is that CPU
    assert plan_layers(parse_num_device_layers(["2"]), 5, ("cpu",)).stages == (Stage("cpu", 0, 5, 0),)
    # two ordinals that are both the CPU stay two stages (separate pools); the host joins the last
    stages = plan_layers(parse_num_device_layers(["1:1", "0:2"]), 4, SPLIT).stages
    assert [(s.start, s.stop, s.ordinal) for s in stages] == [(0, 1, 1), (1, 4, 0)]
    assert plan_layers(parse_num_device_layers(["1:0", "0:0"]), 3, two_gpus).stages == (Stage("cpu", 0, 3, HOST),)


def test_simulated_devices_is_the_enumerator_and_is_checked():
    from agentkit.engine.loading.device_map import ordinal_devices

    assert ordinal_devices(torch.device("cpu")) == ("cpu",)
    with simulated_devices(SPLIT):
        assert ordinal_devices(torch.device("cpu")) == SPLIT
    assert ordinal_devices(torch.device("cpu")) == ("cpu",)
    with pytest.raises(TypeError, match="device strings"):
        with simulated_devices("cpu"):
            pass


def test_split_tiny_model_places_weights_and_kv_per_stage_and_matches_unsplit(tiny_llama):
    with Runner(Which.Plain(tiny_llama), device="cpu", progress=False) as one:
        ref = [greedy(one, p) for p in PROMPTS]
        single = one.served_model().engine.runner
        with simulated_devices(SPLIT), Runner(Which.Plain(tiny_llama), device="cpu", progress=False,
                                               num_device_layers=["0:1", "1:1"]) as two:
            split = two.served_model().engine.runner
            model, pools = split.model, split.pool.pools
            assert [(start, stop) for _d, start, stop in model.stages] == [(0, 1), (1, 2)]
            assert isinstance(split.pool, StagedKVPool) and len(pools) == 2 and pools[0] is not pools[1]
            assert [p.k.shape[0] for p in pools] == [1, 1] and pools[0].k.data_ptr() != pools[1].k.data_ptr()
            assert pools[0].num_blocks == pools[1].num_blocks == split.num_blocks  # global block ids
            seen: dict[int, object] = {}

            def spy(i: int):
                def hook(_mod, args):
                    seen[i] = args[3]  # the pool this layer's attention is given
                return hook

            for i, layer in enumerate(model.layers):
                layer.self_attn.register_forward_pre_hook(spy(i))
            got = [greedy(two, p) for p in PROMPTS]
            assert got == ref
            for i, (dev, start, _stop) in enumerate(model.stages):
                layer = model.layers[start]
                assert seen[start] is pools[i]  # the layer attends over its own stage's pool object
                assert layer.self_attn.kv_layer == 0 and pools[i].spec.device == dev
                assert all(t.device == dev for t in tensors_of(layer))
                # the stage pool holds exactly the K/V the unsplit model wrote for this layer
                assert pools[i].k[0].abs().sum() > 0
                assert torch.equal(pools[i].k[0], single.pool.k[start])
                assert torch.equal(pools[i].v[0], single.pool.v[start])


def test_split_pool_survives_preemption_and_swap(tiny_llama):
    kw = dict(device="cpu", progress=False, pa_ctxt_len=256, prefix_cache_n=0)
    prompts = [f"Question {i}: " + "rivers mountains cities trains markets" for i in range(5)]
    with Runner(Which.Plain(tiny_llama), **kw) as one:
        alone = [greedy(one, p, 40) for p in prompts]  # ~46 + 40 tokens: 3 blocks each, 8 in the pool
    with simulated_devices(SPLIT), Runner(Which.Plain(tiny_llama), num_device_layers=["0:1", "1:1"], **kw) as two:
        got: list[list[int] | None] = [None] * len(prompts)

        def run(i: int) -> None:
            got[i] = greedy(two, prompts[i], 40)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        swap = two.served_model().engine.scheduler.swap
        assert isinstance(two.served_model().engine.runner.pool, StagedKVPool)
    assert got == alone
    assert swap.num_swapped_out > 0


def test_staged_pool_copy_round_trip_keeps_every_stage():
    specs = [KVSpec(n, 2, 4, torch.float32, torch.device("cpu")) for n in (1, 2)]
    pool = StagedKVPool(specs, num_blocks=4, block_size=2)
    for p in pool.pools:
        p.k.normal_()
        p.v.normal_()
    saved = pool.copy_out([1, 2])
    pool.copy_in([3, 0], saved)
    for p in pool.pools:
        for t in (p.k, p.v):
            blocks = t.view(t.shape[0], 4, 2, 2, 4)
            assert torch.equal(blocks[:, 3], blocks[:, 1]) and torch.equal(blocks[:, 0], blocks[:, 2])
    assert pool.nbytes() == sum(p.nbytes() for p in pool.pools)


def test_fraction_budgets_are_sized_per_device():
    specs = [KVSpec(n, 2, 4, torch.float32, torch.device("cpu")) for n in (1, 3)]
    full = KVSpec(4, 2, 4, torch.float32, torch.device("cpu"))
    blocks = {1: 100, 3: 40, 4: 30}  # fewer blocks fit for more layers

    def plan(spec: KVSpec) -> int:
        return blocks[spec.num_layers]

    assert plan_staged_blocks(plan, full, specs, per_device=True) == 40
    assert plan_staged_blocks(plan, full, specs, per_device=False) == 30
    assert plan_staged_blocks(plan, full, [], per_device=True) == 30


def test_attention_metadata_moves_every_tensor():
    t = torch.arange(4)
    meta = AttnMeta(slots=t, prefills=[PrefillSlice(0, 2, 0, t)], decode_rows=t, decode_blocks=t[None],
                    decode_mask=t.bool(), decode_groups=[(t, t[None], None), (t, t[None], t.bool())])
    moved = meta.to(torch.device("meta"))
    tensors = [moved.slots, moved.prefills[0].blocks, moved.decode_rows, moved.decode_blocks, moved.decode_mask]
    tensors += [x for g in moved.decode_groups for x in g if x is not None]
    assert len(tensors) == 10 and all(x.device.type == "meta" for x in tensors)
    assert moved.decode_groups[0][2] is None and meta.slots.device.type == "cpu"


def test_bad_ordinals_and_unsupported_combinations_raise(tiny_llama, tiny_models):
    with simulated_devices(SPLIT):
        with pytest.raises(ValueError, match=r"ordinal 2, which does not exist here \(available: 0 = cpu, 1 = cpu\)"):
            Runner(Which.Plain(tiny_llama), device="cpu", progress=False, num_device_layers=["0:1", "2:1"])
        with pytest.raises(ValueError, match="places 3 layers .* the model has 2"):
            Runner(Which.Plain(tiny_llama), device="cpu", progress=False, num_device_layers=["0:2", "1:1"])
        with pytest.raises(NotSupportedError, match="only the native engine"):
            Runner(Which.Plain(tiny_models("phi3")), device="cpu", progress=False, num_device_layers=["0:1", "1:1"])
        with Runner(Which.Plain(tiny_llama), device="cpu", progress=False, num_device_layers=["0:1", "1:1"]) as r:
            model = r.served_model().engine.runner.model
            model.kv_spec.aux_layers, model.kv_spec.aux_width = 1, 2
            with pytest.raises(NotSupportedError, match="AnyMoE"):
                model.new_pool(2, 32)


@pytest.mark.slow
def test_split_smollm2_matches_unsplit(smollm2):
    d, f = smollm2
    with Runner(Which.GGUF(d, f, None), progress=False) as one:
        ref = [greedy(one, p, 24) for p in PROMPTS]
    with simulated_devices(SPLIT), Runner(Which.GGUF(d, f, None), progress=False,
                                           num_device_layers=["1:10", "0:12"]) as two:
        runner = two.served_model().engine.runner
        assert [(s, e) for _d, s, e in runner.model.stages] == [(0, 10), (10, 30)]  # 8 host layers join ordinal 0
        assert [p.k.shape[0] for p in runner.pool.pools] == [10, 20]
        assert [greedy(two, p, 24) for p in PROMPTS] == ref


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.skipif(_cuda_count() < 2, reason=f"needs 2 CUDA devices for real multi-GPU placement, found {_cuda_count()}")
def test_two_gpus_place_layers_kv_and_head_for_real(tiny_llama):
    with Runner(Which.Plain(tiny_llama), device="cuda:0", progress=False) as one:
        ref = [greedy(one, p) for p in PROMPTS]
    with Runner(Which.Plain(tiny_llama), device="cuda:0", progress=False, num_device_layers=["0:1", "1:1"]) as two:
        runner = two.served_model().engine.runner
        model = runner.model
        cuda0, cuda1 = torch.device("cuda:0"), torch.device("cuda:1")
        assert all(t.device == cuda0 for t in tensors_of(model.layers[0]))
        assert all(t.device == cuda1 for t in tensors_of(model.layers[1]))
        assert model.embed.weight.device == cuda0 and all(t.device == cuda0 for t in tensors_of(model.lm_head))
        assert [p.k.device for p in runner.pool.pools] == [cuda0, cuda1]
        assert [greedy(two, p) for p in PROMPTS] == ref


@pytest.mark.skipif(_cuda_count() < 1, reason="needs a CUDA device to split layers between a GPU and the CPU")
def test_gpu_and_host_cpu_split_runs(tiny_llama):
    with Runner(Which.Plain(tiny_llama), device="cuda:0", progress=False, num_device_layers=["1"]) as r:
        runner = r.served_model().engine.runner
        assert [p.k.device.type for p in runner.pool.pools] == ["cuda", "cpu"]
        assert all(t.device.type == "cpu" for t in tensors_of(runner.model.layers[1]))
        assert len(greedy(r, PROMPTS[0])) == 16
