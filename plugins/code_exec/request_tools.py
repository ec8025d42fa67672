"""Built-in plugin: code execution and the shell tool for agentic requests (runner-api.md §2.6, §2.7, §2.9).

Scope: `CodeExecPlugin` serves `Runner(code_execution_config=..., shell_config=...)`
(`runner_options`), registers the local executor as "local" (`register_code_executors`, inherited
from `LocalExecutorPlugin`), and, once per agentic turn (`agent_request_tools`), offers
- `mistralrs_execute_python` / `mistralrs_reset_python_session` when the request sets
  `enable_code_execution`,
- `mistralrs_shell` / `mistralrs_surface_outputs` when it sets `enable_shell` (or `shell_skills`).
Each session gets one executor (a kernel and a work directory) from an `ExecutorPool`, kept across
the session's turns, reaped after an idle TTL and closed at `runner_shutdown`. The executor is
the one named by `RunnerConfig.extra["code_exec"]["executor"]` (default "local") among those
plugins register (`ToolContext.code_executors()`, i.e. `PluginHost.code_executors()`), so a
remote sandbox service can replace it.
The request's input files and skills are mounted into the work directory and described to the
model in system notes.

Plugin options (`Runner(plugin_options={"code_exec": {...}})`, i.e. `RunnerConfig.extra`):
`executor` (name, default "local"),
`idle_ttl_s` (seconds an idle session's executor lives, default 3600),
`spare` (default True: with per-session temporary work directories, one started, never-used
executor waits for the next new session, so its first call skips the kernel start; refilled in the
background after each new session, closed after `idle_ttl_s` unused and at shutdown; not used with
a configured `working_directory`, which sessions share).

Importing this module does not import jupyter_client: the executor modules load on first use.

Non-goals: running code and sandboxing (`executor`, `kernel`, `shell`, `sandbox` modules), the
loop's permission checks (it reads `Tool.permission` / `Tool.approve`), reading stored files for
the model (`agentkit.plugins.files`).
"""

from __future__ import annotations

import importlib
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentkit.config import RunnerConfig
from agentkit.errors import ConfigError
from agentkit.hookspecs import hookimpl
from agentkit.plugins.code_exec.mounts import (
    inputs_note,
    mount_input_files,
    mount_skills,
    remove_tree,
    skills_note,
)
from agentkit.plugins.code_exec.plugin import LocalExecutorPlugin
from agentkit.plugins.code_exec.tools import Workspace, python_tools, shell_tools
from agentkit.tools import Tool

if TYPE_CHECKING:
    from agentkit.agent.context import ToolContext

__all__ = ["DEFAULT_EXECUTOR", "PLUGIN_NAME", "CodeExecPlugin"]

log = logging.getLogger("agentkit.plugins.code_exec")

PLUGIN_NAME = "code_exec"
DEFAULT_EXECUTOR = "local"
DEFAULT_IDLE_TTL_S = 3600.0
_EXECUTOR_MODULE = "agentkit.plugins.code_exec.executor"


def _same(a: Any, b: Any, what: str) -> Any:
    """The one of `a`, `b` that is set; ConfigError when both are set and differ."""
    if a is not None and b is not None and a != b:
        raise ConfigError(f"code_execution_config and shell_config give different {what} ({a!r} and {b!r}); "
                          f"a session's Python and shell share one work directory and sandbox, so give "
                          f"the same {what} to both (or to one of them)")
    return a if a is not None else b


class CodeExecPlugin(LocalExecutorPlugin):
    """The "local" executor and the code and shell tools; one instance per Runner (per-session
    executors live in it)."""

    plugin_name = PLUGIN_NAME

    def __init__(self) -> None:
        self._config = RunnerConfig()
        self._lock = threading.Lock()
        self._claim_lock = threading.Lock()
        self._pool: Any = None
        self._workdirs: dict[str, Path] = {}
        self._temp_dirs: list[Path] = []
        self._warned: set[str] = set()

    # ---- configuration ---------------------------------------------------------------------------
    @hookimpl
    def runner_options(self) -> list[str]:
        """This plugin serves `code_execution_config` and `shell_config`."""
        return ["code_execution_config", "shell_config"]

    @hookimpl
    def runner_configure(self, config: RunnerConfig) -> None:
        """Keep the Runner's options; check the plugin options and that code and shell agree."""
        code, shell = config.code_execution_config, config.shell_config
        _same(code and code.working_directory, shell and shell.working_directory, "working_directory")
        _same(code and code.sandbox_policy, shell and shell.sandbox_policy, "sandbox_policy")
        options = config.plugin_options(PLUGIN_NAME)
        unknown = set(options) - {"executor", "idle_ttl_s", "spare"}
        if unknown:
            raise ConfigError(f"extra[{PLUGIN_NAME!r}] has unknown option(s) {sorted(unknown)}; "
                              f"known: 'executor', 'idle_ttl_s', 'spare'")
        if not isinstance(options.get("spare", True), bool):
            raise ConfigError(f"extra[{PLUGIN_NAME!r}]['spare'] must be True or False, got {options['spare']!r}")
        name = options.get("executor", DEFAULT_EXECUTOR)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"extra[{PLUGIN_NAME!r}]['executor'] must be an executor name, got {name!r}")
        ttl = options.get("idle_ttl_s", DEFAULT_IDLE_TTL_S)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
            raise ConfigError(f"extra[{PLUGIN_NAME!r}]['idle_ttl_s'] must be a positive number, got {ttl!r}")
        self._config = config

    # ---- executors -------------------------------------------------------------------------------
    def _executor_name(self) -> str:
        return self._config.plugin_options(PLUGIN_NAME).get("executor", DEFAULT_EXECUTOR)

    def _factory(self, factories: Mapping[str, Callable[..., Any]]) -> Callable[..., Any]:
        name = self._executor_name()
        found = dict(factories)
        if name not in found:
            raise ConfigError(f"code executor {name!r} is not registered (registered: {sorted(found)}); "
                              f"install the plugin that registers it or set extra={{'code_exec': "
                              f"{{'executor': 'local'}}}}")
        return found[name]

    def _get_pool(self, context: ToolContext) -> Any:
        with self._lock:
            if self._pool is None:
                module = importlib.import_module(_EXECUTOR_MODULE)
                ttl = float(self._config.plugin_options(PLUGIN_NAME).get("idle_ttl_s", DEFAULT_IDLE_TTL_S))
                registered = (context.code_executors() if context.code_executors is not None
                              else {DEFAULT_EXECUTOR: module.local_executor_factory})
                spare = self._new_temp_spec if self._spare_wanted() else None
                self._pool = module.ExecutorPool(self._factory(registered), idle_ttl_s=ttl, spare=spare)
            return self._pool

    def _configured_workdir(self) -> str | None:
        code, shell = self._config.code_execution_config, self._config.shell_config
        return _same(code and code.working_directory, shell and shell.working_directory, "working_directory")

    def _spare_wanted(self) -> bool:
        return bool(self._config.plugin_options(PLUGIN_NAME).get("spare", True)) and not self._configured_workdir()

    def _new_temp_spec(self) -> Any:
        """The spec of a new session's executor in a new temporary work directory (the spare's)."""
        path = Path(tempfile.mkdtemp(prefix="mistralrs-code-"))
        with self._lock:
            self._temp_dirs.append(path)
        return self._spec(path)

    def _session_executor(self, pool: Any, session_id: str) -> tuple[Any, Any]:
        """The session's executor and spec; a new session takes the pool's spare when it has one."""
        with self._claim_lock:  # one claim per new session, even for concurrent requests
            with self._lock:
                known = self._workdirs.get(session_id)
            if known is None and pool.spare is not None and session_id not in pool:
                executor, spec = pool.claim(session_id)
                with self._lock:
                    self._workdirs[session_id] = spec.workdir
                return executor, spec
        spec = self._spec(self._workdir(session_id))
        return pool.get(session_id, spec), spec

    def _workdir(self, session_id: str) -> Path:
        """The session's work directory: the configured one (shared), else its own temp dir."""
        configured = self._configured_workdir()
        with self._lock:
            path = self._workdirs.get(session_id)
            if path is None:
                if configured:
                    path = Path(configured).resolve()
                    path.mkdir(parents=True, exist_ok=True)
                else:
                    path = Path(tempfile.mkdtemp(prefix="mistralrs-code-"))
                    self._temp_dirs.append(path)
                self._workdirs[session_id] = path
            return path

    def _spec(self, workdir: Path) -> Any:
        from agentkit.plugins.code_exec.protocol import ExecutorSpec

        code, shell = self._config.code_execution_config, self._config.shell_config
        policy = _same(code and code.sandbox_policy, shell and shell.sandbox_policy, "sandbox_policy")
        timeouts = [c.timeout_secs for c in (code, shell) if c is not None]
        return ExecutorSpec(workdir=workdir, python_path=code.python_path if code else None, policy=policy,
                            shell_path=shell.shell_path if shell else "/bin/sh",
                            timeout_s=float(max(timeouts, default=600)))

    # ---- one agentic turn ------------------------------------------------------------------------
    @hookimpl
    def agent_request_tools(self, context: ToolContext) -> list[Tool] | None:
        """The code tools and/or the shell tools when the request enables them; None otherwise."""
        req = context.request
        want_code, want_shell = bool(req.enable_code_execution), bool(req.enable_shell or req.shell_skills)
        if not (want_code or want_shell):
            return None
        code, shell = self._config.code_execution_config, self._config.shell_config
        # as mistral.rs: a tool whose Runner option is missing is simply not offered (said once in the log)
        if want_code and code is None:
            self._warn_once("enable_code_execution=True is ignored: build the Runner with "
                            "code_execution_config=CodeExecutionConfig(...) to offer the Python tools")
            want_code = False
        if want_shell and shell is None:
            self._warn_once("enable_shell=True (or shell_skills) is ignored: build the Runner with "
                            "shell_config=ShellConfig(...) to offer the shell tools")
            want_shell = False
        if not (want_code or want_shell):
            return None
        session_id = context.session.id
        pool = self._get_pool(context)
        executor, spec = self._session_executor(pool, session_id)
        workdir = spec.workdir
        names, skipped = mount_input_files(workdir, context.input_files)
        if names or skipped:
            context.notes.append(inputs_note(names, skipped))
        if want_shell and req.shell_skills:
            mount_skills(workdir, req.shell_skills)
            context.notes.append(skills_note(req.shell_skills))
        ws = Workspace(context=context, executor=lambda: pool.get(session_id, spec), workdir=workdir,
                       isolation=executor.isolation.describe(), code=code, shell=shell)
        return (python_tools(ws) if want_code else []) + (shell_tools(ws) if want_shell else [])

    def _warn_once(self, message: str) -> None:
        with self._lock:
            if message in self._warned:
                return
            self._warned.add(message)
        log.warning(message)

    # ---- shutdown --------------------------------------------------------------------------------
    @hookimpl
    def runner_shutdown(self) -> None:
        """Close every session's executor and delete the temporary work directories."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close_all()  # first: a spare being built still adds its work directory
        with self._lock:
            temp, self._temp_dirs = self._temp_dirs, []
            self._workdirs.clear()
        for path in temp:
            remove_tree(path)
