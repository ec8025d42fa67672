"""The MCP config types: mistralrs's signatures, agentkit's keyword extensions, clear errors."""

from __future__ import annotations

import pytest

from agentkit.api.agent_options import McpClientConfigPy, McpServerConfigPy, McpServerSourcePy


def test_sources_take_all_arguments_positionally_and_require_them():
    http = McpServerSourcePy.Http("http://127.0.0.1:1/mcp", 5, {"X-A": "b"})
    proc = McpServerSourcePy.Process("node", ["x.js"], "/tmp", {"K": "v"})
    ws = McpServerSourcePy.WebSocket("ws://127.0.0.1:1", None, None)
    assert (http.kind, proc.kind, ws.kind) == ("Http", "Process", "WebSocket")
    assert (proc.command, proc.args, proc.work_dir, proc.env) == ("node", ["x.js"], "/tmp", {"K": "v"})
    for make in (lambda: McpServerSourcePy.Http("u"), lambda: McpServerSourcePy.Process("c", None),
                 lambda: McpServerSourcePy.WebSocket("u", None)):
        with pytest.raises(TypeError, match="required positional argument"):
            make()


def test_server_config_defaults_and_extensions():
    src = McpServerSourcePy.Process("node", None, None, None)
    cfg = McpServerConfigPy("id", "name", src, True, "pre", None, "tok")
    assert (cfg.enabled, cfg.tool_prefix, cfg.bearer_token, cfg.required) == (True, "pre", "tok", False)
    ext = McpServerConfigPy("id", "name", src, required=True, allow_tools=["a*"], deny_tools=["b"],
                            connect_timeout_secs=2)
    assert ext.required and ext.allow_tools == ["a*"] and ext.connect_timeout_secs == 2.0
    with pytest.raises(TypeError):
        McpServerConfigPy("id", "name", src, True, None, None, None, True)  # required is keyword-only
    with pytest.raises(TypeError, match="required"):
        McpServerConfigPy("id", "name", src, required="yes")
    with pytest.raises(ValueError, match="connect_timeout_secs"):
        McpServerConfigPy("id", "name", src, connect_timeout_secs=0)


def test_client_config_checks():
    src = McpServerSourcePy.Process("node", None, None, None)
    cfg = McpClientConfigPy([McpServerConfigPy("a", "a", src)], True, 5, 2, tool_hard_timeout_secs=60)
    assert (cfg.tool_timeout_secs, cfg.max_concurrent_calls, cfg.tool_hard_timeout_secs) == (5, 2, 60.0)
    with pytest.raises(ValueError, match="unique"):
        McpClientConfigPy([McpServerConfigPy("a", "a", src), McpServerConfigPy("a", "b", src)])
    with pytest.raises(ValueError, match="max_concurrent_calls"):
        McpClientConfigPy([], max_concurrent_calls=0)
    with pytest.raises(ValueError, match="retry_interval_secs"):
        McpClientConfigPy([], retry_interval_secs=-1)
