"""The MCP plugin through a real Runner: status and reconnect methods, `required`, shutdown, and
an MCP tool called through the agent loop on SmolLM2 (round 1 forced), with a 1 MB result capped."""

from __future__ import annotations

import json

import pytest

from agentkit import ChatCompletionRequest, Runner, Which
from agentkit.errors import McpServerError


def test_runner_status_reconnect_and_shutdown_without_children(mcp, tiny_llama):
    before = set(mcp.descendants())
    broken = mcp.Server("broken", "broken", mcp.Source.Process("/nonexistent/mcp", None, None, None))
    config = mcp.Client([mcp.toy("toy"), broken], retry_interval_secs=60)
    runner = Runner(Which.Plain(tiny_llama), progress=False, mcp_client_config=config)
    try:
        states = {s.id: s.state for s in runner.mcp_status()}
        assert states == {"toy": "connected", "broken": "failed"}
        assert [s.id for s in runner.mcp_reconnect()] == ["toy", "broken"]
        assert runner.mcp_reconnect()[1].failures == 3  # start, then two reconnects
    finally:
        runner.shutdown()
    assert set(mcp.descendants()) - before == set()
    assert {s.state for s in runner.mcp_status()} == {"closed"}


def test_required_server_failing_fails_runner_start(mcp, tiny_llama):
    before = set(mcp.descendants())
    must = mcp.Server("must", "must", mcp.Source.Process("/nonexistent/mcp", None, None, None), required=True)
    with pytest.raises(McpServerError, match="'must'"):
        Runner(Which.Plain(tiny_llama), progress=False, mcp_client_config=mcp.Client([mcp.toy("ok"), must]))
    assert set(mcp.descendants()) - before == set()


def test_runner_without_mcp_config_has_empty_status(tiny_llama):
    with Runner(Which.Plain(tiny_llama), progress=False) as runner:
        assert runner.mcp_status() == [] and runner.mcp_reconnect() == []


@pytest.mark.slow
def test_smollm2_calls_an_mcp_tool_through_the_agent_loop(mcp, smollm2):
    which = Which.GGUF(quantized_model_id=smollm2[0], quantized_filename=smollm2[1], tok_model_id=None)
    config = mcp.Client([mcp.toy("toy", allow_tools=["echo", "megabyte"])])  # the model chooses among 2
    with Runner(which, progress=False, mcp_client_config=config, tool_output_max_tokens=256) as runner:
        resp = runner.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages=[{"role": "user", "content": "Echo the word 'banana' with the echo tool."}],
            tool_choice="required", max_tokens=64, max_tool_rounds=1,
            temperature=0.0))
        [record] = resp.agentic_tool_calls
        assert record.name == "echo" and record.result_content.startswith("toy: ")  # round 1 was forced
        assert json.loads(record.arguments)["text"] in record.result_content

        resp = runner.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages=[{"role": "user", "content": "Get a megabyte."}], max_tokens=64, max_tool_rounds=1,
            tool_choice={"type": "function", "function": {"name": "megabyte"}}, temperature=0.0))
        [record] = resp.agentic_tool_calls
        assert record.name == "megabyte" and "characters truncated" in record.result_content
        seen = runner.tokenize_text(record.result_content, False, None)
        assert len(seen) <= 256 and len(record.result_content) < 256 * 16  # the loop's cap holds for MCP
        [spilled] = record.file_ids  # and the loop kept the full text in a file
        assert len(runner.find_file(spilled).text) == 1_000_000
        assert resp.choices[0].finish_reason in ("stop", "length")
