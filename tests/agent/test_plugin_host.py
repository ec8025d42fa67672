"""The PluginHost façade: registrations (tools, tool sources, search providers, code executors,
cached, clashes named), the lifecycle hooks (historic configure, shutdown), the engine hooks,
session state, and RunnerConfig. A fresh host per test."""

from __future__ import annotations

import json
import logging
import types

import pytest
from plugin_fixtures import AddPlugin, add, host_of

from agentkit.config import RunnerConfig
from agentkit.errors import ConfigError, PluginError
from agentkit.hookspecs import hookimpl
from agentkit.tools import Tool, ToolCall

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
