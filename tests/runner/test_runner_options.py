"""Runner options that plugins serve (runner_options hook -> RunnerConfig, else NotSupportedError), and
the one option parser shared by `Runner(...)` and `add_model`.

A missing-plugin error is raised before the model loads: those tests point at a path that does not
exist, so a later check would surface as a load error instead.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from agentkit import ChatCompletionRequest, Runner, Which
from agentkit.api.agent_options import CodeExecutionConfig, McpClientConfigPy, ShellConfig
from agentkit.config import PLUGIN_OPTIONS, RunnerConfig, check_plugin_options, given_plugin_options
from agentkit.errors import NotSupportedError, PluginError
from agentkit.hookspecs import hookimpl
from agentkit.plugin_host import PluginHost
from agentkit.plugin_manager import DEFAULT_PLUGINS

MISSING = Which.Plain("/nonexistent/agentkit-model")


class McpLike:
    """Declares it serves `mcp_client_config` and records the config it is given."""

    plugin_name = "mcp_like"

    def __init__(self) -> None:
        self.config: RunnerConfig | None = None

    @hookimpl
    def runner_options(self):
        return ["mcp_client_config"]

    @hookimpl
    def runner_configure(self, config):
        self.config = config


# One non-default value per plugin-served option.
VALUES = {
    "tool_callbacks": {"t": lambda name, args: "x"},
    "enable_search": True,
    "search_embedding_model": "some-embedder",
    "search_callback": lambda query: [],
    "mcp_client_config": McpClientConfigPy(servers=[]),
    "code_execution_config": CodeExecutionConfig(),
    "shell_config": ShellConfig(),
    "anymoe_config": object(),
    "which_draft": Which.Plain("/draft"),
    "speculative_gamma": 4,
    "mtp_model": "mtp",
    "mtp_n_predict": 2,
}


def test_every_plugin_option_is_a_runner_config_field_and_a_runner_argument():
    import inspect

    fields = set(RunnerConfig.__dataclass_fields__)
    params = set(inspect.signature(Runner).parameters)
    assert set(VALUES) == set(PLUGIN_OPTIONS)
    assert set(PLUGIN_OPTIONS) <= fields and set(PLUGIN_OPTIONS) <= params


@pytest.mark.parametrize("name", list(PLUGIN_OPTIONS))
def test_an_option_no_plugin_serves_raises_naming_it_and_its_provider(name, monkeypatch):
    builtins = [spec.partition(":")[0].rsplit(".", 1)[-1] for spec in DEFAULT_PLUGINS]
    monkeypatch.setenv("AGENTKIT_DISABLE_PLUGINS", ",".join(builtins))
    with pytest.raises(NotSupportedError) as err:
        Runner(MISSING, progress=False, **{name: VALUES[name]})
    msg = str(err.value)
    assert f"{name}=" in msg and PLUGIN_OPTIONS[name].provider in msg
    assert f"runner_options() hook returns {name!r}" in msg


def test_mcp_without_a_plugin_names_the_extra_to_install(monkeypatch):
    monkeypatch.setenv("AGENTKIT_DISABLE_PLUGINS", "mcp")
    with pytest.raises(NotSupportedError, match=re.escape("pip install 'agentkit[mcp]'")) as err:
        Runner(MISSING, progress=False, mcp_client_config=McpClientConfigPy(servers=[]))
    assert "mcp_client_config" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_a_plugin_that_declares_mcp_receives_it_in_runner_config(tiny_llama):
    plugin = McpLike()
    mcp = McpClientConfigPy(servers=[])
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[plugin], mcp_client_config=mcp) as r:
        assert plugin.config is not None and plugin.config.mcp_client_config is mcp
        assert plugin.config.model_ids == (tiny_llama,)
        assert r.list_models() == [tiny_llama]


def test_a_declared_option_does_not_excuse_another():
    with pytest.raises(NotSupportedError) as err:
        Runner(MISSING, progress=False, plugins=[McpLike()], mcp_client_config=McpClientConfigPy(servers=[]),
               mtp_model="mtp", enable_search=True)  # enable_search: the built-in web_search
    msg = str(err.value)
    assert "mtp_model=" in msg and "enable_search=" not in msg and "mcp_client_config=" not in msg


def test_tool_callbacks_is_served_by_the_default_builtin_and_disabling_it_raises(monkeypatch):
    assert "agentkit.plugins.tool_callbacks:ToolCallbacksPlugin" in DEFAULT_PLUGINS
    host = PluginHost.create(entry_points=False)
    assert host.handled_options()["tool_callbacks"] == ["agentkit.plugins.tool_callbacks"]
    assert host.handled_options()["anymoe_config"] == ["agentkit.plugins.anymoe"]
    monkeypatch.setenv("AGENTKIT_DISABLE_PLUGINS", "tool_callbacks")
    with pytest.raises(NotSupportedError, match="tool_callbacks=.*AGENTKIT_DISABLE_PLUGINS"):
        Runner(MISSING, progress=False, tool_callbacks={"t": lambda name, args: "x"})


def test_defaults_count_as_not_given():
    assert given_plugin_options(RunnerConfig(model_id="m", seed=3)) == []
    check_plugin_options(RunnerConfig(), handled=())  # nothing given, nothing needed
    assert given_plugin_options(RunnerConfig(speculative_gamma=32, enable_search=False)) == []


def test_runner_options_rejects_unknown_names_and_bad_returns():
    class Typo:
        @hookimpl
        def runner_options(self):
            return ["mcp_client_configs"]

    class NotAList:
        @hookimpl
        def runner_options(self):
            return "mcp_client_config"

    with pytest.raises(PluginError, match=r"Typo.*'mcp_client_configs'.*did you mean 'mcp_client_config'"):
        PluginHost.create([Typo()], builtins=False, entry_points=False).handled_options()
    with pytest.raises(PluginError, match="NotAList.*must return a list"):
        PluginHost.create([NotAList()], builtins=False, entry_points=False).handled_options()


def test_builtin_plugins_import_no_optional_dependency():
    specs = [spec.partition(":")[0] for spec in DEFAULT_PLUGINS]
    optional = ["torch", "mcp", "ddgs", "sentence_transformers", "jupyter_client", "ipykernel"]
    code = (f"import importlib, sys\nfor m in {specs!r}: importlib.import_module(m)\n"
            f"print([m for m in {optional!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd="/tmp", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- one parser for Runner(...) and add_model ------------------------------------------------------


@pytest.fixture(scope="module")
def runner(tiny_llama):
    with Runner(Which.Plain(tiny_llama), progress=False) as r:
        yield r


BAD = [
    ({"weights": "sparse"}, ValueError, "weights must be 'auto' or 'dense'"),
    ({"paged_attn": True, "no_paged_attn": True}, ValueError, "mutually exclusive"),
    ({"pa_cache_type": "fp4"}, TypeError, "pa_cache_type must be a PagedCacheType"),
    ({"in_situ_quant": "Q9Z"}, ValueError, "unknown in_situ_quant type 'Q9Z'"),
    ({"max_seqs": 0}, ValueError, "max_seqs must be a positive integer"),
    ({"pa_blk_size": 12}, ValueError, "pa_blk_size must be 8, 16 or 32"),
]


@pytest.mark.parametrize(("kwargs", "exc", "message"), BAD)
def test_a_bad_option_gives_the_same_error_through_init_and_add_model(runner, tiny_llama, kwargs, exc, message):
    with pytest.raises(exc, match=re.escape(message)) as from_init:
        Runner(Which.Plain(tiny_llama), progress=False, **kwargs)
    with pytest.raises(exc, match=re.escape(message)) as from_add:
        runner.add_model(Which.Plain(tiny_llama), model_id="other", **kwargs)
    assert str(from_init.value) == str(from_add.value)
    assert runner.list_models() == [tiny_llama]


def test_which_must_be_a_which_variant_in_both(runner):
    with pytest.raises(TypeError, match="which must be a Which variant") as a:
        Runner("model.gguf", progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="which must be a Which variant") as b:
        runner.add_model("model.gguf")  # type: ignore[arg-type]
    assert str(a.value) == str(b.value)


class SeesConfig:
    """Records the `RunnerConfig` a per-turn hook receives."""

    def __init__(self) -> None:
        self.configs: list[RunnerConfig | None] = []

    @hookimpl
    def agent_request_tools(self, context) -> None:
        self.configs.append(context.config)


def test_model_ids_follow_add_remove_and_default(tiny_llama):
    seen = SeesConfig()
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[seen]) as r:
        def config() -> RunnerConfig:  # the config a hook called now receives (max_tool_rounds: one agent turn)
            r.send_chat_completion_request(ChatCompletionRequest(model="x", messages="Hi", max_tokens=1,
                                                                 max_tool_rounds=1))
            return seen.configs[-1]

        assert config().model_ids == (tiny_llama,)
        r.add_model(Which.Plain(tiny_llama), model_id="second")
        assert config().model_ids == (tiny_llama, "second")
        r.set_default_model_id("second")
        now = config()
        assert now.model_id == "second" and now.model_ids == ("second", tiny_llama)
        r.remove_model("second")
        now = config()
        assert now.model_id == tiny_llama and now.model_ids == (tiny_llama,)
    assert len(seen.configs) == 4  # one turn per check
