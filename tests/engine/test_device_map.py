"""num_device_layers: mistral.rs's formats parsed, checked and planned (no GPU needed)."""

from __future__ import annotations

import pytest

from agentkit import ChatCompletionRequest, Runner, Which
from agentkit.engine.loading.device_map import DeviceLayers, parse_num_device_layers, plan_layers

TWO_GPUS = ("cuda:0", "cuda:1")


def test_single_count_means_device_zero_and_is_clamped():
    assert parse_num_device_layers(["500"]) == (DeviceLayers(0, 500),)
    assert plan_layers(parse_num_device_layers(["500"]), 4, ("cpu",)).devices == ("cpu",) * 4
    plan = plan_layers(parse_num_device_layers(["500"]), 3, TWO_GPUS)
    assert plan.devices == ("cuda:0",) * 3 and plan.single_device == "cuda:0"


def test_fewer_layers_than_the_model_leaves_the_rest_on_the_cpu():
    plan = plan_layers(parse_num_device_layers(["2"]), 5, TWO_GPUS)
    assert plan.devices == ("cuda:0", "cuda:0", "cpu", "cpu", "cpu")
    assert plan.single_device is None and plan.counts() == {"cuda:0": 2, "cpu": 3}


def test_ordinal_list_places_layers_in_order():
    entries = parse_num_device_layers(["1:2", " 0:1 "])
    assert entries == (DeviceLayers(1, 2), DeviceLayers(0, 1))
    assert plan_layers(entries, 4, TWO_GPUS).devices == ("cuda:1", "cuda:1", "cuda:0", "cpu")


@pytest.mark.parametrize("spec, match", [
    (["abc"], "not of the form ORD:NUM"),
    (["-1"], "not of the form ORD:NUM"),
    (["0:x"], "layer count 'x'"),
    (["a:3"], "device ordinal 'a'"),
    (["0:1", "0:2"], "ordinal 0 twice"),
    ([], "empty"),
])
def test_malformed_strings_are_rejected(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_num_device_layers(spec)


@pytest.mark.parametrize("spec", ["500", [500], None])
def test_wrong_types_are_rejected(spec):
    with pytest.raises(TypeError, match="num_device_layers"):
        parse_num_device_layers(spec)


def test_missing_ordinal_and_overfull_lists_are_rejected():
    with pytest.raises(ValueError, match="ordinal 2, which does not exist"):
        plan_layers(parse_num_device_layers(["2:1"]), 4, TWO_GPUS)
    with pytest.raises(ValueError, match="ordinal 1, which does not exist.*0 = cpu"):
        plan_layers(parse_num_device_layers(["1:4"]), 4, ("cpu",))
    with pytest.raises(ValueError, match="places 5 layers .* the model has 4"):
        plan_layers(parse_num_device_layers(["0:3", "1:2"]), 4, TWO_GPUS)


def test_runner_accepts_the_examples_spelling_and_rejects_a_missing_device(tiny_llama):
    runner = Runner(Which.Plain(tiny_llama), num_device_layers=["500"], device="cpu", progress=False)
    try:
        res = runner.send_chat_completion_request(ChatCompletionRequest(
            model="default", messages=[{"role": "user", "content": "hi"}], max_tokens=3))
        assert res.usage.completion_tokens >= 1
    finally:
        runner.shutdown()
    with pytest.raises(ValueError, match="ordinal 3, which does not exist"):
        Runner(Which.Plain(tiny_llama), num_device_layers=["3:1"], device="cpu", progress=False)
    with pytest.raises(ValueError, match="ORD:NUM"):
        Runner(Which.Plain(tiny_llama), num_device_layers=["all"], device="cpu", progress=False)
