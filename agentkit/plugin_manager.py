"""Building a Runner's plugin manager (`PluginHost`, the façade over it, is in `agentkit.plugin_host`).

Scope:
- `make_plugin_manager()`: one `pluggy.PluginManager` per Runner (never module-global). It adds
  the hookspecs of `agentkit.hookspecs`, registers the built-ins of `DEFAULT_PLUGINS`, then the
  entry points of the `agentkit` group (filtered by `AGENTKIT_LOAD_PLUGINS`), then the caller's
  plugin objects (last, so pluggy's LIFO order calls them first), blocks the names in
  `AGENTKIT_DISABLE_PLUGINS`, and runs `check_plugins()`.
- `register_plugin()` and `check_plugins()`: register one more plugin object and check every
  registered plugin against the hookspecs (`PluginHost.add_plugin` uses both).

Non-goals: the hook specs themselves (`agentkit.hookspecs`), the agent loop (what to do with a
`None` result, approvals configured on the Runner), and any built-in plugin's behaviour.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import logging
import os
import types
from collections.abc import Iterable

import pluggy

from agentkit import hookspecs
from agentkit.errors import PluginError
from agentkit.hookspecs import PROJECT

__all__ = [
    "CORE_ROUTER_NAME",
    "DEFAULT_PLUGINS",
    "ENV_DISABLE_PLUGINS",
    "ENV_LOAD_PLUGINS",
    "check_plugins",
    "make_plugin_manager",
    "register_plugin",
]

logger = logging.getLogger(__name__)

DEFAULT_PLUGINS: tuple[str, ...] = ("agentkit.plugins.tool_callbacks:ToolCallbacksPlugin",
                                    "agentkit.plugins.web_search:WebSearchPlugin",
                                    "agentkit.plugins.code_exec:CodeExecPlugin",
                                    "agentkit.plugins.mcp:McpPlugin",
                                    "agentkit.plugins.files:FilesPlugin",
                                    "agentkit.plugins.anymoe:AnyMoePlugin",
                                    "agentkit.plugins.speculative:SpeculativePlugin")
"""Built-in plugins, by import spec: "package.module" registers the module itself;
"package.module:Name" registers `Name()` (a fresh instance per manager) when `Name` is a class,
else the object. Registered under the module name, disabled by it or its last component. A
built-in uses only the public hooks: it reads its Runner options in `runner_configure` (so keep
per-Runner state on a class instance) and imports its optional dependencies lazily."""

ENV_LOAD_PLUGINS = "AGENTKIT_LOAD_PLUGINS"
"""Entry-point allowlist: unset = every entry point; "" = none; "a,b" = only those names."""

ENV_DISABLE_PLUGINS = "AGENTKIT_DISABLE_PLUGINS"
"""Blocklist "a,b": plugin names (entry-point, built-in or user plugin names) never registered."""

CORE_ROUTER_NAME = "agentkit.core_router"


def _env_names(var: str) -> list[str] | None:
    """The comma-separated names in env `var`; None when unset, [] when empty."""
    value = os.environ.get(var)
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def _import_spec(spec: str) -> object:
    """Import "module" (the module) or "module:Name" (`Name()` for a class, else the object)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(f"plugin {spec!r} failed to import: {type(exc).__name__}: {exc}") from exc
    if not attr:
        return module
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise PluginError(f"plugin {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj() if isinstance(obj, type) else obj


def _plugin_name(pm: pluggy.PluginManager, plugin: object) -> str:
    """A readable, unique registration name: `plugin_name` attribute, module or class name."""
    name = getattr(plugin, "plugin_name", None)
    if not isinstance(name, str) or not name:
        if isinstance(plugin, types.ModuleType):
            name = plugin.__name__
        elif isinstance(plugin, type):
            name = plugin.__name__
        else:
            name = type(plugin).__name__
    if pm.is_blocked(name):
        return name
    unique, n = name, 1
    while pm.has_plugin(unique):
        n += 1
        unique = f"{name}-{n}"
    return unique


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> bool:
    """Register `plugin` as `name` unless blocked; pluggy's validation errors become PluginError."""
    if pm.is_blocked(name):
        logger.info("plugin %r is disabled (%s)", name, ENV_DISABLE_PLUGINS)
        return False
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} breaks the hook contract: {exc}") from exc
    except ValueError as exc:
        raise PluginError(f"plugin {name!r} could not be registered: {exc}") from exc
    return True


def register_plugin(pm: pluggy.PluginManager, plugin: object) -> str | None:
    """Register a user plugin (module, class, instance or import-spec string); its name, or None if blocked."""
    if isinstance(plugin, str):
        obj = _import_spec(plugin)
        name = plugin.partition(":")[0]
    else:
        obj, name = plugin, _plugin_name(pm, plugin)
    return name if _register(pm, obj, name) else None


def check_plugins(pm: pluggy.PluginManager) -> None:
    """`pm.check_pending()`, raising PluginError that names the plugin, the hook and a close match."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        known = [h for h in dir(pm.hook) if not h.startswith("_") and getattr(pm.hook, h).has_spec()]
        unknown = [h for h in dir(pm.hook) if not h.startswith("_") and not getattr(pm.hook, h).has_spec()
                   and any(i.plugin is exc.plugin for i in getattr(pm.hook, h).get_hookimpls())]
        hint = difflib.get_close_matches(unknown[0], known, n=1) if unknown else []
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise PluginError(f"plugin {name!r}: {exc}{did_you_mean}; the hooks are listed in docs/plugins.md "
                          f"and agentkit.hookspecs") from exc


def _entry_point_names() -> list[str]:
    """Names of every installed entry point in the `agentkit` group, sorted, without duplicates."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=PROJECT)})


def make_plugin_manager(plugins: Iterable[object] = (), *, builtins: bool = True,
                        entry_points: bool | None = None) -> pluggy.PluginManager:
    """Build a fresh plugin manager for one Runner.

    Order: hookspecs; names in `AGENTKIT_DISABLE_PLUGINS` blocked; `DEFAULT_PLUGINS` (when
    `builtins`); entry points of the `agentkit` group; then `plugins` (modules, classes,
    instances, or "module[:Name]" strings), registered last so they are called first.
    `entry_points=None` follows `AGENTKIT_LOAD_PLUGINS` (unset: all, "": none, "a,b": those);
    True loads every entry point regardless of it; False loads none. The disable list always
    applies (by registration name; a built-in may also be named by its last module component).
    Raises PluginError when a plugin fails to import or register, or implements an unknown hook.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    disabled = set(_env_names(ENV_DISABLE_PLUGINS) or [])
    for name in disabled:
        pm.set_blocked(name)

    if builtins:
        for spec in DEFAULT_PLUGINS:
            module_name = spec.partition(":")[0]
            if module_name.rsplit(".", 1)[-1] in disabled:
                pm.set_blocked(module_name)
            if not pm.is_blocked(module_name):
                _register(pm, _import_spec(spec), module_name)

    if entry_points is None:
        wanted = _env_names(ENV_LOAD_PLUGINS)
    else:
        wanted = None if entry_points else []
    installed = _entry_point_names() if wanted != [] else []
    for name in installed if wanted is None else wanted:
        if name not in installed:
            logger.warning("%s names %r but no installed distribution has an entry point %r in group %r",
                           ENV_LOAD_PLUGINS, name, name, PROJECT)
            continue
        if pm.is_blocked(name) or pm.has_plugin(name):
            continue
        try:
            pm.load_setuptools_entrypoints(PROJECT, name=name)
        except Exception as exc:
            raise PluginError(f"plugin entry point {name!r} failed to load: {type(exc).__name__}: {exc} "
                              f"(disable it with {ENV_DISABLE_PLUGINS}={name})") from exc

    for plugin in plugins:
        register_plugin(pm, plugin)
    check_plugins(pm)
    return pm

