"""Online calibration and re-ISQ on a tiny ISQ model (Runner.begin/apply_calibration, send_re_isq)."""

from __future__ import annotations

import threading

import pytest
import torch

from agentkit import CalibrationStatus, ChatCompletionRequest, Runner, Which
from agentkit.engine.imatrix import load_cimatrix

REQ = ChatCompletionRequest(model="default", messages=[{"role": "user", "content": "hello there"}], max_tokens=6)


def _weights(module, k: int) -> torch.Tensor:
    """The dense weight [N, K] a (packed) linear module applies: its output for the identity."""
    with torch.inference_mode():
        return module(torch.eye(k)).float().t()


def _source(model_dir: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(f"{model_dir}/model.safetensors")


@pytest.fixture
def isq_runner(tiny_llama):
    runner = Runner(Which.Plain(tiny_llama), in_situ_quant="Q4K", prefix_cache_n=0, progress=False)
    yield runner
    runner.shutdown()


def test_status_counts_every_token_row(isq_runner):
    before = isq_runner.calibration_status()
    assert before == CalibrationStatus(collecting=False, layers=14, layers_tracking=0, total_rows=0,
                                       min_rows=0, max_rows=0)  # 2 layers x q,k,v,o,gate,up,down
    assert isq_runner.begin_calibration().collecting
    res = isq_runner.send_chat_completion_request(REQ)
    rows = res.usage.prompt_tokens + res.usage.completion_tokens - 1  # the last token is never fed back
    st = isq_runner.calibration_status()
    assert (st.layers_tracking, st.min_rows, st.max_rows, st.total_rows) == (14, rows, rows, 14 * rows)
    isq_runner.send_chat_completion_request(REQ)
    assert isq_runner.calibration_status().total_rows == 2 * 14 * rows


def test_apply_requantizes_swaps_and_still_serves(isq_runner, tmp_path):
    host = isq_runner.served_model()
    layer = host.engine.runner.model.layers[0]
    old = _weights(layer.mlp.gate_up, 64)
    isq_runner.begin_calibration()
    for _ in range(3):
        isq_runner.send_chat_completion_request(REQ)
    collected = isq_runner.calibration_status()
    returned = isq_runner.apply_calibration(save_cimatrix=str(tmp_path / "traffic.cimatrix"))
    assert returned == collected and returned.total_rows > 0  # the status before applying
    assert not isq_runner.calibration_status().collecting
    assert not layer.mlp.gate_up._forward_pre_hooks  # collection off: no hook left on the hot path
    new = _weights(host.engine.runner.model.layers[0].mlp.gate_up, 64)
    assert new.shape == old.shape and not torch.allclose(new, old)
    saved = load_cimatrix(tmp_path / "traffic.cimatrix")
    assert len(saved) == 14 and saved["model.layers.1.mlp.down_proj"].shape == (128,)
    assert (saved["model.layers.0.self_attn.q_proj"] > 0).all()
    res = isq_runner.send_chat_completion_request(REQ)
    assert res.choices[0].finish_reason in ("length", "stop") and res.usage.completion_tokens >= 1


def test_requantization_reads_the_source_weights(isq_runner, tiny_llama):
    """Re-quantizing Q4K -> Q4K from the source with the error-minimising search lands closer to
    the checkpoint than the load-time min/max quantization; from the resident int4 copy it could not."""
    src = _source(tiny_llama)["model.layers.1.mlp.down_proj.weight"].float()
    model = isq_runner.served_model().engine.runner.model
    at_load = (_weights(model.layers[1].mlp.down, 128) - src).pow(2).sum()
    isq_runner.send_re_isq("Q4K")
    isq_runner.send_chat_completion_request(REQ)  # queued behind the re-ISQ: runs on the new weights
    again = (_weights(model.layers[1].mlp.down, 128) - src).pow(2).sum()
    assert again < 0.95 * at_load, (float(again), float(at_load))


def test_send_re_isq_changes_the_type_in_place(isq_runner):
    model = isq_runner.served_model().engine.runner.model
    assert model.layers[0].self_attn.qkv.kind == "int4"
    isq_runner.send_re_isq("Q8_0")
    res = isq_runner.send_chat_completion_request(REQ)
    assert res.usage.completion_tokens >= 1
    assert {model.layers[i].get_submodule(a).kind for i in (0, 1)
            for a in ("self_attn.qkv", "self_attn.o", "mlp.gate_up", "mlp.down")} == {"int8"}
    with pytest.raises(ValueError, match="unknown in_situ_quant type"):
        isq_runner.send_re_isq("Q9_9")


def test_apply_while_other_threads_stream(isq_runner):
    isq_runner.begin_calibration()
    isq_runner.send_chat_completion_request(REQ)
    errors: list[BaseException] = []
    done = threading.Event()

    def traffic() -> None:
        while not done.is_set():
            try:
                isq_runner.send_chat_completion_request(REQ)
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        isq_runner.apply_calibration()
    finally:
        done.set()
        for t in threads:
            t.join(60)
    assert not errors


def test_apply_needs_data_and_a_cimatrix_name(isq_runner, tmp_path):
    with pytest.raises(ValueError, match="No calibration data collected"):
        isq_runner.apply_calibration()
    isq_runner.begin_calibration()
    isq_runner.send_chat_completion_request(REQ)
    with pytest.raises(ValueError, match="must end in .cimatrix"):
        isq_runner.apply_calibration(save_cimatrix=str(tmp_path / "x.bin"))
    assert isq_runner.calibration_status().collecting  # a bad path does not consume the statistics


def test_non_isq_models_get_a_clear_error(tiny_llama):
    runner = Runner(Which.Plain(tiny_llama), progress=False)
    try:
        for call in (runner.begin_calibration, runner.calibration_status, runner.apply_calibration):
            with pytest.raises(ValueError, match="requires the model to have been loaded with ISQ.*in_situ_quant"):
                call()
        with pytest.raises(ValueError, match="Runtime re-ISQ requires .* ISQ"):
            runner.send_re_isq("Q8_0")
    finally:
        runner.shutdown()


def test_isq_on_the_transformers_fallback_warns_and_calibration_says_why(tiny_models):
    with pytest.warns(RuntimeWarning, match="in_situ_quant has no effect on phi3"):
        runner = Runner(Which.Plain(tiny_models("phi3")), in_situ_quant="Q4K", progress=False)
    try:
        with pytest.raises(ValueError, match="phi3 runs on the transformers fallback"):
            runner.begin_calibration()
    finally:
        runner.shutdown()


def _cached(resp) -> int:
    details = resp.usage.prompt_tokens_details
    return 0 if details is None else details.cached_tokens


@pytest.mark.parametrize("swap", ["apply_calibration", "send_re_isq"])
def test_a_weight_swap_drops_the_prefix_cache(tiny_llama, swap):
    """KV cached before the swap was computed by the old weights: the next identical prompt must be
    recomputed (0 cached tokens), and the one after it is served from the cache again."""
    long = ChatCompletionRequest(model="default", max_tokens=2,
                                 messages=[{"role": "user", "content": "tell me about the sea " * 20}])
    with Runner(Which.Plain(tiny_llama), in_situ_quant="Q4K", progress=False) as r:
        r.begin_calibration()
        r.send_chat_completion_request(long)
        assert _cached(r.send_chat_completion_request(long)) > 0
        if swap == "apply_calibration":
            r.apply_calibration()
        else:
            r.send_re_isq("Q8_0")
        assert _cached(r.send_chat_completion_request(long)) == 0
        assert _cached(r.send_chat_completion_request(long)) > 0
