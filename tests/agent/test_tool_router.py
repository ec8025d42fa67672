"""The core tool router and `agent_execute_tool`: registered tools run, failures become results,
plugins intercept or wrap calls (LIFO order, approval wrappers), and ToolCallbacksPlugin."""

from __future__ import annotations

import json

import pluggy
import pytest
from plugin_fixtures import AddPlugin, host_of

from agentkit.errors import CancelToolCall, PluginError
from agentkit.hookspecs import hookimpl
from agentkit.plugin_host import PluginHost, run_tool
from agentkit.plugin_manager import CORE_ROUTER_NAME, make_plugin_manager
from agentkit.plugins.tool_callbacks import ToolCallbacksPlugin
from agentkit.tools import Tool, ToolCall, ToolResult

# ---- the core router and agent_execute_tool --------------------------------------------------


def tool_plugin(*tools: Tool) -> object:
    class P:
        @hookimpl
        def register_tools(self, register):
            for t in tools:
                register(t)

    return P()


def test_router_runs_registered_tools():
    host = host_of(AddPlugin())
    result = host.execute_tool(ToolCall("add", '{"a": 40}'), session=None)
    assert result == ToolResult(content="42", status="ok")
    assert CORE_ROUTER_NAME not in host.plugin_names() and host.pm.has_plugin(CORE_ROUTER_NAME)


def test_router_returns_none_for_unknown_and_schema_only_tools():
    host = host_of(tool_plugin(Tool(name="client_side")))
    assert host.execute_tool(ToolCall("nope", "{}")) is None
    assert host.execute_tool(ToolCall("client_side", "{}")) is None


def test_router_turns_failures_into_results():
    def boom(name, args):
        raise ValueError("boom")

    def deny(name, args):
        raise CancelToolCall("not allowed")

    host = host_of(tool_plugin(Tool(name="boom", fn=boom), Tool(name="number", fn=lambda n, a: 42),
                               Tool(name="deny", fn=deny), Tool(name="rich", fn=lambda n, a: ToolResult("r", "ok")),
                               Tool(name="echo", fn=lambda n, a: a["x"])))
    failed = host.execute_tool(ToolCall("boom", "{}"))
    assert failed.status == "failed"
    assert json.loads(failed.content) == {"error": "ValueError: boom", "tool": "boom", "status": "failed"}
    wrong_type = host.execute_tool(ToolCall("number", "{}"))
    assert wrong_type.status == "failed" and "returned int, expected str" in wrong_type.content
    denied = host.execute_tool(ToolCall("deny", "{}"))
    assert denied.status == "denied" and "not allowed" in denied.content
    assert host.execute_tool(ToolCall("rich", "{}")) == ToolResult("r", "ok")
    bad_json = host.execute_tool(ToolCall("echo", "{not json"))
    assert bad_json.status == "failed" and "not valid JSON" in bad_json.content
    missing_arg = host.execute_tool(ToolCall("echo", "{}"))
    assert missing_arg.status == "failed" and "KeyError" in missing_arg.content
    wrong_args = host_of(AddPlugin()).execute_tool(ToolCall("add", '{"c": 1}'))
    assert wrong_args.status == "failed" and "TypeError" in wrong_args.content


def test_run_tool_never_raises_for_schema_only_tools():
    result = run_tool(Tool(name="client"), ToolCall("client", "{}"))
    assert result.status == "failed" and "no Python implementation" in result.content


def test_a_plugin_intercepts_a_tool_before_the_router():
    class Intercept:
        @hookimpl
        def agent_execute_tool(self, call):
            if call.name == "add":
                return ToolResult("intercepted")
            return None

    host = host_of(AddPlugin(), Intercept())
    assert host.execute_tool(ToolCall("add", '{"a": 1}')).content == "intercepted"
    assert host.execute_tool(ToolCall("other", "{}")) is None


def test_lifo_order_user_plugins_first_and_tryfirst():
    class A:
        @hookimpl
        def agent_execute_tool(self, call):
            return ToolResult("A")

    class B:
        @hookimpl
        def agent_execute_tool(self, call):
            return ToolResult("B")

    class Early:
        @hookimpl(tryfirst=True)
        def agent_execute_tool(self, call):
            return ToolResult("early")

    assert host_of(A(), B()).execute_tool(ToolCall("x")).content == "B"  # registered last, called first
    assert host_of(Early(), A(), B()).execute_tool(ToolCall("x")).content == "early"


class Approval:
    """The approval pattern: a wrapper that denies before the tool runs, or post-processes its result."""

    def __init__(self, deny: set[str]) -> None:
        self.deny = deny
        self.seen: list[ToolResult | None] = []

    @hookimpl(wrapper=True)
    def agent_execute_tool(self, call, session):
        if call.name in self.deny:
            raise CancelToolCall(f"user denied {call.name}")
        result = yield
        self.seen.append(result)
        if result is not None and result.status == "ok":
            return ToolResult(content=f"[approved] {result.content}")
        return result


def test_wrapper_denies_a_call_before_it_runs():
    ran: list[dict] = []
    plugin = tool_plugin(Tool(name="rm", fn=lambda n, a: ran.append(a) or "deleted"))
    approval = Approval(deny={"rm"})
    result = host_of(plugin, approval).execute_tool(ToolCall("rm", '{"path": "/"}'))
    assert result.status == "denied"
    assert json.loads(result.content)["error"] == "user denied rm"
    assert ran == [] and approval.seen == []


def test_wrapper_sees_and_replaces_the_inner_result():
    approval = Approval(deny=set())
    host = host_of(AddPlugin(), approval)
    assert host.execute_tool(ToolCall("add", '{"a": 1, "b": 1}')).content == "[approved] 2"
    assert host.execute_tool(ToolCall("unknown")) is None
    assert approval.seen == [ToolResult("2"), None]


def test_execute_tool_validates_what_plugins_return():
    class Sloppy:
        @hookimpl
        def agent_execute_tool(self, call):
            return "plain text"

    class Raises:
        @hookimpl
        def agent_execute_tool(self, call):
            raise OSError("disk full")

    sloppy = host_of(Sloppy()).execute_tool(ToolCall("x"))
    assert sloppy.status == "failed" and "returned str, expected a ToolResult" in sloppy.content
    raised = host_of(Raises()).execute_tool(ToolCall("x"))
    assert raised.status == "failed" and "OSError: disk full" in raised.content


def test_execute_tool_surfaces_broken_registration():
    class Bad:
        @hookimpl
        def register_tools(self, register):
            register(Tool(name="t", fn=lambda n, a: ""))
            register(Tool(name="t", fn=lambda n, a: ""))

    with pytest.raises(PluginError, match="'t'"):
        host_of(Bad()).execute_tool(ToolCall("t"))


def test_one_host_per_manager():
    pm = make_plugin_manager(builtins=False, entry_points=False)
    PluginHost(pm)
    with pytest.raises(PluginError, match="one per Runner"):
        PluginHost(pm)
    with pytest.raises(TypeError, match="make_plugin_manager"):
        PluginHost(pluggy.PluginManager("other"))


# ---- ToolCallbacksPlugin ---------------------------------------------------------------------


def test_tool_callbacks_plugin_registers_callbacks():
    def weather(tool_name: str, args: dict) -> str:
        """Get the weather.

        Args:
            city (str): The city.
            unit (str, optional): c or f.
        """
        return f"{tool_name}: sunny in {args['city']}"

    plugin = ToolCallbacksPlugin({"get_weather": weather})
    host = host_of(plugin)
    assert host.plugin_names() == ["tool_callbacks"]
    tool = host.tools()["get_weather"]
    assert tool.description == "Get the weather."
    assert tool.parameters["required"] == ["city"]
    assert tool.parameters["properties"]["city"] == {"type": "string", "description": "The city."}
    result = host.execute_tool(ToolCall("get_weather", '{"city": "Paris"}'))
    assert result == ToolResult("get_weather: sunny in Paris")


def test_tool_callbacks_plugin_rejects_bad_input():
    with pytest.raises(TypeError, match="tool_callbacks must be a dict of name -> callable"):
        ToolCallbacksPlugin([("a", print)])
    with pytest.raises(TypeError, match="must be callable"):
        ToolCallbacksPlugin({"a": "not callable"})
    with pytest.raises(ValueError, match="invalid"):
        ToolCallbacksPlugin({"bad name!": lambda n, a: ""})
