"""The plugin contract and its loading: hookspecs, make_plugin_manager (built-ins, entry points,
env allow/block lists, check_pending), and docs/plugins.md documenting exactly the hooks. A fresh
manager per test. The PluginHost façade: test_plugin_host.py; the core tool router:
test_tool_router.py."""

from __future__ import annotations

import inspect
import logging
import os
import re
import subprocess
import sys
import types
import uuid
from pathlib import Path

import pytest
from plugin_fixtures import AddPlugin, host_of

from agentkit import hookspecs, plugin_manager
from agentkit import testing as plugin_utils
from agentkit.errors import PluginError
from agentkit.hookspecs import PROJECT, hookimpl
from agentkit.plugin_host import PluginHost
from agentkit.plugin_manager import CORE_ROUTER_NAME, make_plugin_manager
from agentkit.plugins.tool_callbacks import ToolCallbacksPlugin
from agentkit.tools import Tool, ToolCall, ToolResult

ROOT = Path(__file__).resolve().parents[2]

HOOKS = ["runner_options", "runner_configure", "runner_shutdown", "register_tools", "register_tool_sources",
         "register_search_providers", "register_code_executors", "engine_prepare_model",
         "engine_draft_proposer", "agent_request_tools", "agent_execute_tool", "session_dump", "session_load"]





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
    assert pm.hook.agent_execute_tool.spec.argnames == ("call", "session", "tool")


def test_contract_modules_do_not_import_torch():
    code = ("import sys, agentkit.hookspecs, agentkit.handles, agentkit.plugin_manager, agentkit.config, "
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
    assert plugin_manager.DEFAULT_PLUGINS[0] == "agentkit.plugins.tool_callbacks:ToolCallbacksPlugin"
    assert "agentkit.plugins.code_exec:CodeExecPlugin" in plugin_manager.DEFAULT_PLUGINS
    assert "agentkit.plugins.mcp:McpPlugin" in plugin_manager.DEFAULT_PLUGINS
    assert "agentkit.plugins.anymoe:AnyMoePlugin" in plugin_manager.DEFAULT_PLUGINS
    assert "agentkit.plugins.speculative:SpeculativePlugin" in plugin_manager.DEFAULT_PLUGINS


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
