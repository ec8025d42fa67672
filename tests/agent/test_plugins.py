"""The plugin contract: hookspecs, make_plugin_manager (built-ins, entry points, env allow/block
lists, check_pending), the PluginHost façade, the core tool router, ToolCallbacksPlugin,
RunnerConfig, and docs/plugins.md documenting exactly the hooks. A fresh manager per test."""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import subprocess
import sys
import types
import uuid
from pathlib import Path

import pluggy
import pytest

from agentkit import hookspecs, plugin_manager
from agentkit import testing as plugin_utils
from agentkit.config import RunnerConfig
from agentkit.errors import CancelToolCall, ConfigError, PluginError
from agentkit.hookspecs import PROJECT, hookimpl
from agentkit.plugin_host import PluginHost, run_tool
from agentkit.plugin_manager import CORE_ROUTER_NAME, make_plugin_manager
from agentkit.plugins.tool_callbacks import ToolCallbacksPlugin
from agentkit.tools import Tool, ToolCall, ToolResult

ROOT = Path(__file__).resolve().parents[2]





HOOKS = ["runner_options", "runner_configure", "runner_shutdown", "register_tools", "register_tool_sources",
         "register_search_providers", "register_code_executors", "engine_prepare_model",
         "engine_draft_proposer", "agent_execute_tool", "session_dump", "session_load"]


def host_of(*plugins: object) -> PluginHost:
    return PluginHost.create(plugins, builtins=False, entry_points=False)


def add(a: int, b: int = 2) -> str:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return str(a + b)


class AddPlugin:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def register_tools(self, register):
        self.calls += 1
        register(add)


# ---- hookspecs -----------------------------------------------------------------------------


def test_hookspecs_declare_the_contract():
    assert PROJECT == "agentkit"
    pm = make_plugin_manager(builtins=False, entry_points=False)
    names = sorted(h for h in dir(pm.hook) if not h.startswith("_"))
    assert names == sorted(HOOKS)
    opts = {name: getattr(pm.hook, name).spec.opts for name in HOOKS}
    assert opts["runner_configure"]["historic"] is True
    assert opts["engine_draft_proposer"]["firstresult"] is True
    assert opts["agent_execute_tool"]["firstresult"] is True
    plain = set(HOOKS) - {"runner_configure", "engine_draft_proposer", "agent_execute_tool"}
    assert all(not opts[n]["firstresult"] and not opts[n]["historic"] for n in plain)
    assert pm.hook.register_tool_sources.spec.argnames == ("register", "config")
    assert pm.hook.agent_execute_tool.spec.argnames == ("call", "session")


def test_contract_modules_do_not_import_torch():
    code = ("import sys, agentkit.hookspecs, agentkit.plugin_manager, agentkit.config, "
            "agentkit.plugins.tool_callbacks; assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd="/tmp", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# ---- make_plugin_manager ---------------------------------------------------------------------


def test_each_call_builds_a_fresh_manager():
    plugin = AddPlugin()
    pm1 = make_plugin_manager([plugin], builtins=False, entry_points=False)
    pm2 = make_plugin_manager(builtins=False, entry_points=False)
    assert pm1 is not pm2
    assert pm1.is_registered(plugin) and not pm2.is_registered(plugin)
    assert not pm1.has_plugin(CORE_ROUTER_NAME)  # the router belongs to the PluginHost
    assert plugin_manager.DEFAULT_PLUGINS == ("agentkit.plugins.tool_callbacks:ToolCallbacksPlugin",
                                              "agentkit.plugins.speculative:SpeculativePlugin")


def test_modules_classes_and_instances_are_plugins():
    module = types.ModuleType("my_tools_module")

    @hookimpl
    def register_tools(register):
        register(Tool(name="from_module", fn=lambda n, a: "m"))

    module.register_tools = register_tools

    class ClassPlugin:
        @hookimpl
        def register_tools(register):  # called unbound on the class: no self
            register(Tool(name="from_class", fn=lambda n, a: "c"))

    class Named:
        plugin_name = "named"

        def __init__(self, tool: str) -> None:
            self.tool = tool

        @hookimpl
        def register_tools(self, register):
            register(Tool(name=self.tool, fn=lambda n, a: n))

    host = host_of(module, ClassPlugin, Named("one"), Named("two"))
    assert host.plugin_names() == ["my_tools_module", "ClassPlugin", "named", "named-2"]
    assert sorted(host.tools()) == ["from_class", "from_module", "one", "two"]
    assert host.tool_owner("two") == "named-2"


def test_registering_the_same_object_twice_is_a_plugin_error():
    plugin = AddPlugin()
    with pytest.raises(PluginError, match="could not be registered"):
        make_plugin_manager([plugin, plugin], builtins=False, entry_points=False)


def test_check_pending_names_the_plugin_and_the_unknown_hook():
    class Typo:
        plugin_name = "typo_plugin"

        @hookimpl
        def register_tool(self, register):
            pass

    with pytest.raises(PluginError) as err:
        make_plugin_manager([Typo()], builtins=False, entry_points=False)
    msg = str(err.value)
    assert "typo_plugin" in msg and "unknown hook 'register_tool'" in msg
    assert "did you mean 'register_tools'" in msg


def test_an_argument_the_spec_lacks_is_a_plugin_error():
    class BadArgs:
        @hookimpl
        def register_tools(self, register, model):
            pass

    with pytest.raises(PluginError, match=r"(?s)BadArgs.*model"):
        make_plugin_manager([BadArgs()], builtins=False, entry_points=False)


def _builtin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module with a module-level hook and a plugin class; returns its name."""
    name = f"builtin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from agentkit.hookspecs import hookimpl\n"
        "from agentkit.tools import Tool\n"
        "@hookimpl\n"
        "def register_search_providers(register):\n"
        "    register('builtin', lambda query, options: [])\n"
        "class Stateful:\n"
        "    def __init__(self):\n"
        "        self.config = None\n"
        "    @hookimpl\n"
        "    def runner_configure(self, config):\n"
        "        self.config = config\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_builtins_by_module_name_and_class_spec(tmp_path, monkeypatch):
    name = _builtin_module(tmp_path, monkeypatch)
    monkeypatch.setattr(plugin_manager, "DEFAULT_PLUGINS", (name,))
    host = PluginHost.create(entry_points=False)
    assert host.plugin_names() == [name]
    assert list(host.search_providers()) == ["builtin"]
    assert PluginHost.create(builtins=False, entry_points=False).plugin_names() == []

    monkeypatch.setattr(plugin_manager, "DEFAULT_PLUGINS", (f"{name}:Stateful",))
    pm1 = make_plugin_manager(entry_points=False)
    pm2 = make_plugin_manager(entry_points=False)
    p1, p2 = pm1.get_plugin(name), pm2.get_plugin(name)
    assert type(p1).__name__ == "Stateful" and p1 is not p2  # a fresh instance per manager


def test_disable_list_blocks_builtins_user_plugins_and_entry_points(tmp_path, monkeypatch):
    name = _builtin_module(tmp_path, monkeypatch)
    monkeypatch.setattr(plugin_manager, "DEFAULT_PLUGINS", (name,))
    monkeypatch.setenv("AGENTKIT_DISABLE_PLUGINS", f" {name} , tool_callbacks")
    pm = make_plugin_manager([ToolCallbacksPlugin({"t": lambda n, a: ""}), AddPlugin()], entry_points=False)
    host = PluginHost(pm)
    assert host.plugin_names() == ["AddPlugin"]
    assert pm.is_blocked(name) and pm.is_blocked("tool_callbacks")
    assert list(host.tools()) == ["add"]


def test_builtin_disabled_by_its_short_name(monkeypatch):
    monkeypatch.setattr(plugin_manager, "DEFAULT_PLUGINS", ("agentkit.plugins.tool_callbacks",))
    assert make_plugin_manager(entry_points=False).has_plugin("agentkit.plugins.tool_callbacks")
    monkeypatch.setenv("AGENTKIT_DISABLE_PLUGINS", "tool_callbacks")
    pm = make_plugin_manager(entry_points=False)
    assert not pm.has_plugin("agentkit.plugins.tool_callbacks")
    assert pm.is_blocked("agentkit.plugins.tool_callbacks")


def test_a_builtin_that_fails_to_import_is_a_plugin_error(monkeypatch):
    monkeypatch.setattr(plugin_manager, "DEFAULT_PLUGINS", ("agentkit_no_such_module_xyz",))
    with pytest.raises(PluginError, match="agentkit_no_such_module_xyz.*failed to import"):
        make_plugin_manager(entry_points=False)


# ---- entry points (dist-info on sys.path) ----------------------------------------------------


def _entry_point_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str | None = None) -> tuple[str, str]:
    """A fake installed distribution `rt-plugin-<id>` with entry point `rt_<id>`; (ep name, dist name)."""
    uid = uuid.uuid4().hex[:8]
    module, ep, dist = f"rt_plugin_{uid}", f"rt_{uid}", f"rt-plugin-{uid}"
    (tmp_path / f"{module}.py").write_text(body or (
        "import pluggy\n"
        "hookimpl = pluggy.HookimplMarker('agentkit')\n"
        "@hookimpl\n"
        "def register_tools(register):\n"
        "    def echo(text: str) -> str:\n"
        "        return text\n"
        "    register(echo)\n"))
    plugin_utils.write_dist_info(tmp_path, dist, "0.1", {PROJECT: {ep: module}})
    monkeypatch.syspath_prepend(str(tmp_path))
    return ep, dist


def test_test_suite_never_loads_entry_points_by_default(tmp_path, monkeypatch):
    assert os.environ.get("AGENTKIT_LOAD_PLUGINS") == ""  # tests/conftest.py sets it
    ep, _ = _entry_point_plugin(tmp_path, monkeypatch)
    pm = make_plugin_manager()
    assert not pm.has_plugin(ep)
    assert pm.list_plugin_distinfo() == []


def test_entry_points_are_discovered_when_the_allowlist_is_unset(tmp_path, monkeypatch):
    ep, dist = _entry_point_plugin(tmp_path, monkeypatch)
    monkeypatch.delenv("AGENTKIT_LOAD_PLUGINS")
    host = PluginHost(make_plugin_manager())
    assert ep in host.plugin_names()
    assert host.tool_owner("echo") == ep
    assert dist in [d.project_name for _, d in host.pm.list_plugin_distinfo()]
    assert host.execute_tool(ToolCall("echo", '{"text": "hi"}')) == ToolResult("hi")


def test_allowlist_selects_entry_points_by_name(tmp_path, monkeypatch, caplog):
    ep, _ = _entry_point_plugin(tmp_path, monkeypatch)
    monkeypatch.setenv("AGENTKIT_LOAD_PLUGINS", f"{ep}")
    assert make_plugin_manager().has_plugin(ep)
    monkeypatch.setenv("AGENTKIT_LOAD_PLUGINS", "some_other_plugin")
    with caplog.at_level(logging.WARNING, logger="agentkit.plugin_manager"):
        assert not make_plugin_manager().has_plugin(ep)
    assert "some_other_plugin" in caplog.text


def test_entry_points_argument_overrides_the_environment(tmp_path, monkeypatch):
    ep, _ = _entry_point_plugin(tmp_path, monkeypatch)
    assert make_plugin_manager(entry_points=True).has_plugin(ep)  # env says "" but the caller asks
    monkeypatch.delenv("AGENTKIT_LOAD_PLUGINS")
    assert not make_plugin_manager(entry_points=False).has_plugin(ep)


def test_disabled_entry_point_is_not_loaded(tmp_path, monkeypatch):
    ep, _ = _entry_point_plugin(tmp_path, monkeypatch)
    monkeypatch.delenv("AGENTKIT_LOAD_PLUGINS")
    monkeypatch.setenv("AGENTKIT_DISABLE_PLUGINS", ep)
    pm = make_plugin_manager()
    assert pm.is_blocked(ep) and not pm.has_plugin(ep)


def test_broken_entry_point_is_a_plugin_error_naming_it(tmp_path, monkeypatch):
    ep, _ = _entry_point_plugin(tmp_path, monkeypatch, body="raise ImportError('missing dependency foo')\n")
    monkeypatch.setenv("AGENTKIT_LOAD_PLUGINS", ep)
    with pytest.raises(PluginError, match=f"{ep}.*missing dependency foo.*AGENTKIT_DISABLE_PLUGINS={ep}"):
        make_plugin_manager()


# ---- PluginHost: registrations ---------------------------------------------------------------


def test_register_tools_is_collected_once_and_cached():
    plugin = AddPlugin()
    host = host_of(plugin)
    tools = host.tools()
    assert list(tools) == ["add"]
    assert tools["add"].parameters["required"] == ["a"]
    assert tools["add"].parameters["properties"]["b"] == {"type": "integer", "description": "The second number.",
                                                          "default": 2}
    for _ in range(5):
        host.tools()
        host.all_tools()
        host.execute_tool(ToolCall("add", '{"a": 1}'))
    assert plugin.calls == 1
    tools.clear()  # a copy: the cache is untouched
    assert list(host.tools()) == ["add"]


def test_register_accepts_tools_functions_and_a_new_name():
    class P:
        @hookimpl
        def register_tools(self, register):
            register(Tool(name="raw", description="d", fn=lambda n, a: "raw"))
            register(Tool(name="raw2", fn=lambda n, a: "x"), name="renamed")
            register(add, name="plus")

    tools = host_of(P()).tools()
    assert sorted(tools) == ["plus", "raw", "renamed"]
    assert tools["raw"].description == "d"
    assert tools["plus"].description == "Add two integers."


def test_duplicate_tool_names_name_both_plugins():
    class Other:
        plugin_name = "other_plugin"

        @hookimpl
        def register_tools(self, register):
            register(Tool(name="add", fn=lambda n, a: "other"))

    host = host_of(AddPlugin(), Other())
    with pytest.raises(PluginError) as err:
        host.tools()
    assert "'add'" in str(err.value)
    assert "AddPlugin" in str(err.value) and "other_plugin" in str(err.value)


def test_a_bad_registration_is_a_plugin_error_naming_the_plugin():
    class Bad:
        plugin_name = "bad_plugin"

        @hookimpl
        def register_tools(self, register):
            register(42)

    with pytest.raises(PluginError, match="bad_plugin.*register_tools.*TypeError.*int"):
        host_of(Bad()).tools()


def test_register_hooks_reject_wrappers():
    class Wrapping:
        @hookimpl(wrapper=True)
        def register_tools(self, register):
            return (yield)

    with pytest.raises(PluginError, match="wrapper"):
        host_of(Wrapping()).tools()


def test_search_providers_and_code_executors_registries():
    def provider(query, options):
        return [{"title": query}]

    class P:
        plugin_name = "p"

        @hookimpl
        def register_search_providers(self, register):
            register("local", provider)

        @hookimpl
        def register_code_executors(self, register):
            register("inline", lambda session, sandbox_config: "executor")

    host = host_of(P())
    assert host.search_providers() == {"local": provider}
    assert host.code_executors()["inline"](None, None) == "executor"

    class Dup:
        plugin_name = "dup"

        @hookimpl
        def register_search_providers(self, register):
            register("local", provider)

    with pytest.raises(PluginError, match="provider 'local'.*'p'.*'dup'|provider 'local'.*'dup'.*'p'"):
        host_of(P(), Dup()).search_providers()

    class NotCallable:
        @hookimpl
        def register_code_executors(self, register):
            register("x", "not a factory")

    with pytest.raises(PluginError, match="factory must be callable"):
        host_of(NotCallable()).code_executors()


class StaticSource:
    def __init__(self, name: str, tools: list[Tool]) -> None:
        self.name = name
        self._tools = tools
        self.listed = 0

    def list_tools(self) -> list[Tool]:
        self.listed += 1
        return self._tools


class BrokenSource:
    name = "broken"

    def list_tools(self) -> list[Tool]:
        raise ConnectionError("server gone")


def test_tool_sources_all_tools_and_clashes(caplog):
    src = StaticSource("mcp-a", [Tool(name="add", fn=lambda n, a: "shadowed"),
                                 Tool(name="remote", fn=lambda n, a: f"remote {a['x']}")])
    seen_config = []

    class Sources:
        @hookimpl
        def register_tool_sources(self, register, config):
            seen_config.append(config)
            register(src)
            register(BrokenSource())

    host = host_of(AddPlugin(), Sources())
    host.configure(RunnerConfig(model_id="m", extra={"k": 1}))
    with caplog.at_level(logging.WARNING, logger="agentkit.plugin_manager"):
        tools = host.all_tools()
        host.all_tools()
    assert sorted(tools) == ["add", "remote"]
    assert tools["add"].fn("add", {"a": 1}) == "3"  # the static tool wins
    assert caplog.text.count("'add' of source 'mcp-a' is hidden") == 1  # logged once
    assert "broken" in caplog.text and "server gone" in caplog.text
    assert src.listed == 2  # listed on every call: sources are dynamic
    assert [s.name for s in host.tool_sources()] == ["mcp-a", "broken"]
    assert seen_config[0].model_id == "m"
    assert host.execute_tool(ToolCall("remote", '{"x": 5}')).content == "remote 5"
    assert host.find_tool("add") is host.tools()["add"]


def test_tool_source_must_follow_the_protocol():
    class P:
        @hookimpl
        def register_tool_sources(self, register):
            register(object())

    with pytest.raises(PluginError, match="ToolSource"):
        host_of(P()).tool_sources()


def test_add_plugin_clears_the_caches():
    host = host_of()
    assert host.tools() == {}
    assert host.add_plugin(AddPlugin()) == "AddPlugin"
    assert list(host.tools()) == ["add"]


# ---- PluginHost: lifecycle, engine, sessions -------------------------------------------------


class ConfigRecorder:
    def __init__(self) -> None:
        self.configs: list[RunnerConfig] = []

    @hookimpl
    def runner_configure(self, config):
        self.configs.append(config)


def test_runner_configure_is_historic():
    early, late = ConfigRecorder(), ConfigRecorder()
    host = host_of(early)
    config = RunnerConfig(model_id="tiny", seed=3)
    host.configure(config)
    assert early.configs == [config] and host.config is config
    host.add_plugin(late)  # registered after the call: replayed at once
    assert late.configs == [config]
    assert early.configs == [config]  # not called twice
    with pytest.raises(PluginError, match="already called"):
        host.configure(config)
    with pytest.raises(TypeError, match="RunnerConfig"):
        host_of().configure({"model_id": "x"})


def test_historic_hooks_reject_wrappers():
    class W:
        @hookimpl(wrapper=True)
        def runner_configure(self, config):
            yield

    with pytest.raises(PluginError, match="historic"):
        host_of(W())


def test_shutdown_runs_every_plugin_once_even_if_one_fails(caplog):
    calls: list[str] = []

    class Good:
        plugin_name = "good"

        @hookimpl
        def runner_shutdown(self, runner):
            calls.append(f"good {runner}")

    class Failing:
        plugin_name = "failing"

        @hookimpl
        def runner_shutdown(self):
            calls.append("failing")
            raise RuntimeError("kernel already dead")

    host = host_of(Good(), Failing())  # Failing registered last: called first
    with caplog.at_level(logging.ERROR, logger="agentkit.plugin_manager"):
        host.shutdown("runner-1")
        host.shutdown("runner-1")  # idempotent
    assert calls == ["failing", "good runner-1"]
    assert "'failing' failed in runner_shutdown" in caplog.text and "kernel already dead" in caplog.text


def test_engine_prepare_model_runs_all_in_tryfirst_trylast_order():
    order: list[str] = []

    class First:
        @hookimpl(tryfirst=True)
        def engine_prepare_model(self, model):
            order.append("first")
            model.layers.append("gate")

    class Last:
        @hookimpl(trylast=True)
        def engine_prepare_model(self, model, config):
            order.append(f"last {config.seed}")

    class Middle:
        @hookimpl
        def engine_prepare_model(self, model):
            order.append("middle")

    model = types.SimpleNamespace(layers=[])
    assert host_of(Last(), First(), Middle()).prepare_model(model, RunnerConfig(seed=7)) is None
    assert order == ["first", "middle", "last 7"] and model.layers == ["gate"]


def test_engine_draft_proposer_is_firstresult():
    asked: list[str] = []

    class NoDraft:
        @hookimpl
        def engine_draft_proposer(self, config):
            asked.append("none")
            return None

    class Ngram:
        @hookimpl
        def engine_draft_proposer(self, target, config):
            asked.append("ngram")
            return ("ngram", target, config.speculative_gamma)

    class Never:
        @hookimpl(trylast=True)
        def engine_draft_proposer(self, target):
            asked.append("never")
            return "unreachable"

    host = host_of(Never(), Ngram(), NoDraft())  # NoDraft is called first (LIFO)
    assert host.draft_proposer("r", RunnerConfig(speculative_gamma=4)) == ("ngram", "r", 4)
    assert asked == ["none", "ngram"]
    assert host_of(NoDraft()).draft_proposer("r", RunnerConfig()) is None


class DictStore:
    def __init__(self, data: dict | None = None) -> None:
        self.data = dict(data or {})

    def put(self, key, value):
        self.data[key] = value

    def get(self, key, default=None):
        return self.data.get(key, default)


def test_session_dump_and_load_round_trip_through_json():
    class Counter:
        def __init__(self) -> None:
            self.count: dict[str, int] = {}

        @hookimpl
        def session_dump(self, session, store):
            store.put("counter", {"count": self.count.get(session.id, 0)})

        @hookimpl
        def session_load(self, session, store):
            self.count[session.id] = (store.get("counter") or {}).get("count", 0)

    session = types.SimpleNamespace(id="s1", messages=[], plugin_state={})
    saver = Counter()
    saver.count["s1"] = 4
    store = DictStore()
    host_of(saver).session_dump(session, store)
    restored = DictStore(json.loads(json.dumps(store.data)))
    loader = Counter()
    host_of(loader).session_load(session, restored)
    assert loader.count == {"s1": 4}
    fresh = Counter()
    host_of(fresh).session_load(session, DictStore())  # missing key tolerated
    assert fresh.count == {"s1": 0}


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


# ---- RunnerConfig ----------------------------------------------------------------------------


def test_runner_config_is_frozen_and_validated():
    config = RunnerConfig(model_id="m", extra={"greeter": {"greeting": "hi"}}, tool_callbacks={"t": print})
    assert config.model_ids == ("m",)
    assert config.plugin_options("greeter") == {"greeting": "hi"} and config.plugin_options("other") == {}
    with pytest.raises(AttributeError):
        config.seed = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.extra["x"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        config.tool_callbacks["u"] = print  # type: ignore[index]
    with pytest.raises(ConfigError, match="speculative_gamma"):
        RunnerConfig(speculative_gamma=0)
    with pytest.raises(TypeError, match="seed"):
        RunnerConfig(seed="1")
    with pytest.raises(TypeError, match="tool_callbacks must be a dict"):
        RunnerConfig(tool_callbacks=[print])
    with pytest.raises(TypeError, match="model_ids"):
        RunnerConfig(model_ids="abc")
    with pytest.raises(TypeError, match=r"extra\['greeter'\]"):
        RunnerConfig(extra={"greeter": 3}).plugin_options("greeter")


# ---- docs/plugins.md documents exactly the hooks (the datasette test_docs pattern) -----------


def _doc_sections() -> dict[str, str]:
    """`### name` sections outside code fences: {name: section text}."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_code = False
    for line in (ROOT / "docs" / "plugins.md").read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("#"):
            current = None
            m = re.match(r"^### (\S+)\s*$", line)
            if m:
                current = sections.setdefault(m.group(1), [])
                continue
        if current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def test_docs_document_exactly_the_hooks():
    sections = _doc_sections()
    pm = make_plugin_manager(builtins=False, entry_points=False)
    specs = {h for h in dir(pm.hook) if not h.startswith("_")}
    assert set(sections) == specs
    for name in specs:
        spec = getattr(pm.hook, name).spec
        assert f"`{name}({', '.join(spec.argnames)})`" in sections[name], f"{name}: signature missing in docs"
        for word in ("**When:**", "**Returns:**", "```python"):
            assert word in sections[name], f"{name}: {word} missing in docs"
        assert "None" in sections[name]
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and "When" in doc and "None" in doc, f"{name}: hookspec docstring incomplete"
