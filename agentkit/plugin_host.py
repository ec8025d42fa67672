"""`PluginHost`: the typed façade the core calls hooks through, and the core tool router.

Scope:
- `PluginHost`: typed methods around each hook (the tox pattern); it caches what plugins
  register once per Runner (tools, tool sources, search providers, code executors), so nothing
  calls pluggy per token; and it registers the core tool router (a `trylast`
  `agent_execute_tool` that runs registered tools).

Non-goals: building the manager (`agentkit.plugin_manager`), the hook specs
(`agentkit.hookspecs`), the agent loop (what to do with a `None` result).
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pluggy

from agentkit.config import PLUGIN_OPTIONS, RunnerConfig
from agentkit.errors import CancelToolCall, PluginError, ToolError
from agentkit.hookspecs import PROJECT, hookimpl
from agentkit.plugin_manager import (
    CORE_ROUTER_NAME,
    ENV_DISABLE_PLUGINS,
    check_plugins,
    make_plugin_manager,
    register_plugin,
)
from agentkit.tools import Tool, ToolCall, ToolResult, ToolSource, run_tool

if TYPE_CHECKING:
    from agentkit.agent.context import ToolContext
    from agentkit.sessions import PluginStateStore, Session

__all__ = ["PluginHost", "run_tool"]

logger = logging.getLogger(__name__)


class _CoreRouter:
    """The core's `agent_execute_tool` (trylast): run the registered tool named `call.name`."""

    def __init__(self, host: PluginHost) -> None:
        self._host = host

    @hookimpl(trylast=True)
    def agent_execute_tool(self, call: ToolCall, tool: Tool | None = None) -> ToolResult | None:
        """The result of running `call.name`, or None when no tool (with a Python `fn`) has that name."""
        if tool is None or tool.name != call.name:
            tool = self._host.find_tool(call.name)
        if tool is None or tool.fn is None:
            return None
        return run_tool(tool, call)


class PluginHost:
    """The typed façade over one Runner's plugin manager; the core never calls `pm.hook` itself.

    Registration hooks (`register_*`) run once, on first use, and their results are cached
    (`add_plugin` clears the caches). `PluginHost(pm)` wraps an existing manager from
    `make_plugin_manager()`; `PluginHost.create(...)` builds both.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        if not isinstance(pm, pluggy.PluginManager) or pm.project_name != PROJECT:
            raise TypeError(f"PluginHost needs a pluggy.PluginManager for project {PROJECT!r} "
                            f"(use make_plugin_manager()), got {pm!r}")
        if pm.has_plugin(CORE_ROUTER_NAME):
            raise PluginError("this plugin manager already belongs to a PluginHost; build one per Runner")
        self.pm = pm
        self._lock = threading.RLock()
        self._config: RunnerConfig | None = None
        self._shut_down = False
        self._tools: dict[str, Tool] | None = None
        self._tool_owner: dict[str, str] = {}
        self._sources: list[ToolSource] | None = None
        self._providers: dict[str, Callable[..., Any]] | None = None
        self._executors: dict[str, Callable[..., Any]] | None = None
        self._options: dict[str, list[str]] | None = None
        self._clashes_logged: set[tuple[str, str]] = set()
        pm.register(_CoreRouter(self), name=CORE_ROUTER_NAME)

    @classmethod
    def create(cls, plugins: Iterable[object] = (), *, builtins: bool = True,
               entry_points: bool | None = None) -> PluginHost:
        """`PluginHost(make_plugin_manager(plugins, builtins=..., entry_points=...))`."""
        return cls(make_plugin_manager(plugins, builtins=builtins, entry_points=entry_points))

    # ---- plugins -----------------------------------------------------------------------------

    def plugin_names(self) -> list[str]:
        """Registered plugin names in registration order (the core router not included)."""
        return [name for name, plugin in self.pm.list_name_plugin()
                if plugin is not None and name != CORE_ROUTER_NAME]

    def add_plugin(self, plugin: object) -> str | None:
        """Register one more plugin (it receives historic hooks such as `runner_configure` at once).

        Clears the cached registrations so the next `tools()` etc. include it. Returns the name it
        was registered under, or None when that name is disabled.
        """
        with self._lock:
            name = register_plugin(self.pm, plugin)
            check_plugins(self.pm)
            self._tools = self._sources = self._providers = self._executors = self._options = None
            self._tool_owner = {}
            return name

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def config(self) -> RunnerConfig | None:
        """The config given to `configure()`, or None before it."""
        return self._config

    def handled_options(self) -> dict[str, list[str]]:
        """`runner_options()` of every plugin: option name -> the plugins declaring it (cached).

        Raises PluginError for a name outside `agentkit.config.PLUGIN_OPTIONS` (with a close
        match) or a return value that is not a list of str.
        """
        with self._lock:
            if self._options is None:
                found: dict[str, list[str]] = {}
                for impl in self._impls("runner_options"):
                    names = impl.function()
                    if names is None:
                        continue
                    if isinstance(names, str) or not isinstance(names, (list, tuple)):
                        raise PluginError(f"plugin {impl.plugin_name!r}: runner_options() must return a list "
                                          f"of option names, got {type(names).__name__}")
                    for name in names:
                        if name not in PLUGIN_OPTIONS:
                            hint = difflib.get_close_matches(str(name), PLUGIN_OPTIONS, n=1)
                            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
                            raise PluginError(f"plugin {impl.plugin_name!r}: runner_options() names {name!r}, "
                                              f"which is not a plugin-served Runner option{did_you_mean}; "
                                              f"pass a plugin's own options in RunnerConfig.extra")
                        found.setdefault(name, []).append(impl.plugin_name)
                self._options = found
            return {name: list(plugins) for name, plugins in self._options.items()}

    def update_config(self, config: RunnerConfig) -> None:
        """Replace the config later hooks receive (the Runner does this when its models change).

        `runner_configure` is not called again; hooks called later with a `config` argument
        (`engine_prepare_model`, `engine_draft_proposer`) receive the new one.
        """
        if not isinstance(config, RunnerConfig):
            raise TypeError(f"update_config() needs a RunnerConfig, got {type(config).__name__}")
        with self._lock:
            if self._config is None:
                raise PluginError("update_config() before configure()")
            self._config = config

    def configure(self, config: RunnerConfig) -> None:
        """Call the historic `runner_configure(config)`; plugins registered later get it too. Once only."""
        if not isinstance(config, RunnerConfig):
            raise TypeError(f"configure() needs a RunnerConfig, got {type(config).__name__}")
        with self._lock:
            if self._config is not None:
                raise PluginError("configure() was already called for this PluginHost (one per Runner)")
            self._config = config
            self._sources = None  # register_tool_sources receives the config
        self.pm.hook.runner_configure.call_historic(kwargs={"config": config})

    def shutdown(self, runner: Any) -> None:
        """Call `runner_shutdown(runner)` once: every implementation runs, failures are logged, not raised."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        for impl in self._impls("runner_shutdown", allow_wrappers=True):
            try:
                impl.function(**{a: runner for a in impl.argnames})
            except Exception:
                logger.exception("plugin %r failed in runner_shutdown", impl.plugin_name)

    # ---- registrations (cached) --------------------------------------------------------------

    def _impls(self, hook_name: str, allow_wrappers: bool = False) -> Iterator[pluggy.HookImpl]:
        """Non-wrapper implementations of `hook_name` in pluggy's call order (LIFO, tryfirst first)."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            if impl.wrapper or impl.hookwrapper:
                if allow_wrappers:
                    continue
                raise PluginError(f"plugin {impl.plugin_name!r}: {hook_name} does not support wrapper=True")
            yield impl

    def _collect(self, hook_name: str, make_register: Callable[[str], Callable[..., None]],
                 **kwargs: Any) -> None:
        """Call each implementation with a `register` callback bound to its plugin's name."""
        for impl in self._impls(hook_name):
            args = {**kwargs, "register": make_register(impl.plugin_name)}
            try:
                impl.function(**{a: args[a] for a in impl.argnames})
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                                  f"{type(exc).__name__}: {exc}") from exc

    def tools(self) -> dict[str, Tool]:
        """Static tools from `register_tools`, by name (collected once, then cached; returns a copy)."""
        return dict(self._static_tools())

    def _static_tools(self) -> dict[str, Tool]:
        tools = self._tools
        if tools is not None:
            return tools
        with self._lock:
            if self._tools is None:
                found: dict[str, Tool] = {}
                owner: dict[str, str] = {}

                def make_register(plugin: str) -> Callable[..., None]:
                    def register(fn_or_tool: Tool | Callable[..., Any], name: str | None = None) -> None:
                        tool = _as_tool(fn_or_tool, name)
                        if tool.name in found:
                            raise PluginError(
                                f"tool {tool.name!r} is registered by both plugin {owner[tool.name]!r} and "
                                f"plugin {plugin!r}; rename one (register(fn, name=...)) or disable one "
                                f"({ENV_DISABLE_PLUGINS})")
                        found[tool.name] = tool
                        owner[tool.name] = plugin
                    return register

                self._collect("register_tools", make_register)
                self._tools, self._tool_owner = found, owner
            return self._tools

    def tool_owner(self, name: str) -> str | None:
        """The name of the plugin that registered static tool `name`, or None."""
        self._static_tools()
        return self._tool_owner.get(name)

    def tool_sources(self) -> list[ToolSource]:
        """Dynamic tool sources from `register_tool_sources` (collected once, then cached)."""
        with self._lock:
            if self._sources is None:
                found: list[ToolSource] = []
                owner: dict[str, str] = {}

                def make_register(plugin: str) -> Callable[..., None]:
                    def register(source: ToolSource) -> None:
                        if not isinstance(source, ToolSource):
                            raise TypeError(f"register() needs a ToolSource (a `name` and `list_tools()`), "
                                            f"got {type(source).__name__}")
                        if source.name in owner:
                            raise PluginError(f"tool source {source.name!r} is registered by both plugin "
                                              f"{owner[source.name]!r} and plugin {plugin!r}")
                        owner[source.name] = plugin
                        found.append(source)
                    return register

                self._collect("register_tool_sources", make_register, config=self._config or RunnerConfig())
                self._sources = found
            return list(self._sources)

    def all_tools(self) -> dict[str, Tool]:
        """Static tools plus every source's `list_tools()` (called now); static tools win a name clash.

        A clash, or a source whose `list_tools()` raises, is logged (once per source and name)
        and skipped.
        """
        tools = dict(self._static_tools())
        for source in self.tool_sources():
            for tool in self._list_source(source):
                if tool.name in tools:
                    self._log_clash(source.name, tool.name)
                    continue
                tools[tool.name] = tool
        return tools

    def find_tool(self, name: str) -> Tool | None:
        """The tool `all_tools()` would give for `name`, listing sources only when no static tool matches."""
        tool = self._static_tools().get(name)
        if tool is not None:
            return tool
        for source in self.tool_sources():
            for tool in self._list_source(source):
                if tool.name == name:
                    return tool
        return None

    def _list_source(self, source: ToolSource) -> list[Tool]:
        try:
            return list(source.list_tools())
        except Exception as exc:
            logger.warning("tool source %r failed to list its tools: %s: %s", source.name, type(exc).__name__, exc)
            return []

    def _log_clash(self, source: str, name: str) -> None:
        if (source, name) not in self._clashes_logged:
            self._clashes_logged.add((source, name))
            logger.warning("tool %r of source %r is hidden by an earlier tool of the same name", name, source)

    def _named_registry(self, hook_name: str, what: str) -> dict[str, Callable[..., Any]]:
        found: dict[str, Callable[..., Any]] = {}
        owner: dict[str, str] = {}

        def make_register(plugin: str) -> Callable[..., None]:
            def register(name: str, obj: Callable[..., Any]) -> None:
                if not isinstance(name, str) or not name:
                    raise TypeError(f"register(name, {what}): name must be a non-empty str, got {name!r}")
                if not callable(obj):
                    raise TypeError(f"register({name!r}, {what}): {what} must be callable, got {type(obj).__name__}")
                if name in found:
                    raise PluginError(f"{what} {name!r} is registered by both plugin {owner[name]!r} "
                                      f"and plugin {plugin!r}")
                found[name], owner[name] = obj, plugin
            return register

        self._collect(hook_name, make_register)
        return found

    def search_providers(self) -> dict[str, Callable[..., Any]]:
        """Search providers from `register_search_providers`, by name (cached; returns a copy)."""
        with self._lock:
            if self._providers is None:
                self._providers = self._named_registry("register_search_providers", "provider")
            return dict(self._providers)

    def code_executors(self) -> dict[str, Callable[..., Any]]:
        """Code-executor factories from `register_code_executors`, by name (cached; returns a copy)."""
        with self._lock:
            if self._executors is None:
                self._executors = self._named_registry("register_code_executors", "factory")
            return dict(self._executors)

    # ---- engine ------------------------------------------------------------------------------

    def prepare_model(self, model: Any, config: RunnerConfig,
                      encode_prompt: Callable[[str], list[int]] | None = None) -> None:
        """Call `engine_prepare_model(model, config, encode_prompt)` (every implementation, in pluggy order)."""
        self.pm.hook.engine_prepare_model(model=model, config=config, encode_prompt=encode_prompt)

    def draft_proposer(self, target: Any, config: RunnerConfig) -> Any | None:
        """The first non-None `engine_draft_proposer(target, config)`, or None (no speculation)."""
        return self.pm.hook.engine_draft_proposer(target=target, config=config)

    # ---- agent loop --------------------------------------------------------------------------

    def execute_tool(self, call: ToolCall, session: Session | None = None, tool: Tool | None = None) -> ToolResult | None:
        """Run one tool call through `agent_execute_tool`; None when nothing handles `call.name`.

        `tool` is the turn's tool of that name when the caller resolved it (request tools are
        not registered, so the core router could not find them by name).

        `CancelToolCall` from any implementation or wrapper becomes a "denied" result; any other
        exception (except PluginError/ToolError, which mean broken registration) a "failed" one.
        """
        try:
            result = self.pm.hook.agent_execute_tool(call=call, session=session, tool=tool)
        except CancelToolCall as exc:
            return ToolResult.failure(call, exc.message, status="denied")
        except (PluginError, ToolError):
            raise
        except Exception as exc:
            logger.warning("agent_execute_tool for %r raised %s: %s", call.name, type(exc).__name__, exc)
            return ToolResult.failure(call, f"{type(exc).__name__}: {exc}")
        if result is None or isinstance(result, ToolResult):
            return result
        return ToolResult.failure(call, f"agent_execute_tool returned {type(result).__name__}, "
                                        "expected a ToolResult or None")

    def request_tools(self, context: ToolContext) -> dict[str, Tool]:
        """Every plugin's `agent_request_tools(context)` for one turn, by name.

        A plugin that raises is skipped (logged, and named to the model in `context.notes`), so
        one broken plugin does not fail the request. Raises PluginError when a plugin returns
        something other than Tools, or two plugins offer the same name.
        """
        found: dict[str, Tool] = {}
        owners: dict[str, str] = {}
        if context.search_providers is None:
            context.search_providers = self.search_providers
        if context.code_executors is None:
            context.code_executors = self.code_executors
        for impl in self._impls("agent_request_tools"):
            try:
                tools = impl.function(**({"context": context} if "context" in impl.argnames else {}))
            except Exception as exc:
                logger.exception("plugin %r failed in agent_request_tools", impl.plugin_name)
                context.notes.append(f"The tools of plugin {impl.plugin_name!r} are unavailable this turn "
                                     f"({type(exc).__name__}: {exc}).")
                continue
            for tool in tools or []:
                if not isinstance(tool, Tool):
                    raise PluginError(f"plugin {impl.plugin_name!r}: agent_request_tools must return Tool objects, "
                                      f"got {type(tool).__name__}")
                if tool.name in found:
                    raise PluginError(f"tool {tool.name!r} is offered by plugins {owners[tool.name]!r} and "
                                      f"{impl.plugin_name!r}; rename one of them")
                found[tool.name], owners[tool.name] = tool, impl.plugin_name
        return found

    # ---- sessions ----------------------------------------------------------------------------

    def session_dump(self, session: Session, store: PluginStateStore) -> None:
        """Call `session_dump(session, store)`: plugins `store.put(...)` their state."""
        self.pm.hook.session_dump(session=session, store=store)

    def save_session_state(self, session: Session) -> None:
        """`session_dump` for each plugin with its own store (`session.plugin_state[<plugin name>]`).

        A plugin that raises is logged and skipped: saving the conversation matters more.
        """
        self._per_plugin("session_dump", session)

    def restore_session_state(self, session: Session) -> None:
        """`session_load` for each plugin with its own store (the state its `session_dump` saved)."""
        self._per_plugin("session_load", session)

    def _per_plugin(self, hook_name: str, session: Session) -> None:
        from agentkit.sessions import PluginStateStore

        for impl in self._impls(hook_name):
            args = {"session": session, "store": PluginStateStore(session, impl.plugin_name)}
            try:
                impl.function(**{a: args[a] for a in impl.argnames})
            except Exception:
                logger.exception("plugin %r failed in %s", impl.plugin_name, hook_name)

    def session_load(self, session: Session, store: PluginStateStore) -> None:
        """Call `session_load(session, store)`: plugins `store.get(...)` their state back."""
        self.pm.hook.session_load(session=session, store=store)


def _as_tool(fn_or_tool: Tool | Callable[..., Any], name: str | None) -> Tool:
    """A `Tool` as is (renamed when `name` is given), or `Tool.from_function(fn, name=name)`."""
    if isinstance(fn_or_tool, Tool):
        if name is not None and name != fn_or_tool.name:
            return replace(fn_or_tool, name=name)
        return fn_or_tool
    if callable(fn_or_tool):
        return Tool.from_function(fn_or_tool, name=name)
    raise TypeError(f"register() expects a Tool or a function, got {type(fn_or_tool).__name__}")
