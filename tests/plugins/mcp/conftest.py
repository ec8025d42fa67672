"""Fixtures for the MCP plugin tests: server sources (in-repo toy server, npm and PyPI servers),
a plugin host that connects them, and the process-tree checks used for crash and shutdown tests.

The npm servers live in `.ci/npm` and `mcp-server-time` in its own venv `.ci/mcp-time`, both
installed by `.ci/run`; tests that need them skip with the reason only when node/npm is missing
on the machine, and fail (not skip) when node is there but the install step was not run.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("mcp")

from agentkit.api.agent_options import McpClientConfigPy, McpServerConfigPy, McpServerSourcePy  # noqa: E402
from agentkit.config import RunnerConfig  # noqa: E402
from agentkit.plugin_host import PluginHost  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
TOY = str(Path(__file__).with_name("toy_server.py"))
NPM = ROOT / ".ci" / "npm" / "node_modules" / "@modelcontextprotocol"
TIME_SERVER = ROOT / ".ci" / "mcp-time" / "bin" / "mcp-server-time"


def toy(server_id: str, *args: str, env: dict[str, str] | None = None, enabled: bool = True,
        **kw) -> McpServerConfigPy:
    """A config for the in-repo toy server (stdio), named `server_id`."""
    return McpServerConfigPy(server_id, server_id, McpServerSourcePy.Process(
        sys.executable, [TOY, "--name", server_id, *args], None, env), enabled, **kw)


def npm_server(package: str) -> str:
    """Path of `@modelcontextprotocol/<package>`'s entry script; skip without node, fail without the install."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not installed on this machine (apt-get install nodejs npm)")
    entry = NPM / package / "dist" / "index.js"
    if not entry.exists():
        pytest.fail(f"{entry} is missing: run `bash .ci/mcp-servers.sh` (part of .ci/run)")
    return str(entry)


def time_server() -> str:
    """The `mcp-server-time` script of `.ci/mcp-time`; fail when `.ci/run` did not install it."""
    if not TIME_SERVER.exists():
        pytest.fail(f"{TIME_SERVER} is missing: run `bash .ci/mcp-servers.sh` (part of .ci/run)")
    return str(TIME_SERVER)


def descendants(pid: int | None = None) -> dict[int, str]:
    """{pid: command line} of every live (non-zombie) descendant of `pid` (default: this process)."""
    root = os.getpid() if pid is None else pid
    parents: dict[int, int] = {}
    cmd: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state == "Z":
                continue
            parents[int(entry)] = int(ppid)
            cmd[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError):
            continue
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = cmd[child]
                frontier.append(child)
    return found


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until `pid` is dead (gone or a zombie)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state == "Z":
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} is still alive after {timeout} s")


def kill9(marker: str) -> int:
    """SIGKILL the one descendant whose command line contains `marker`; its pid."""
    matches = [pid for pid, cmd in descendants().items() if marker in cmd]
    assert len(matches) == 1, f"expected one child matching {marker!r}, got {descendants()}"
    os.kill(matches[0], signal.SIGKILL)
    wait_gone(matches[0])
    return matches[0]


def mcp_plugin(host: PluginHost):
    return host.pm.get_plugin("agentkit.plugins.mcp")


@pytest.fixture
def mcp():
    """The helpers above, for test modules (conftest modules cannot be imported under importlib mode)."""
    return SimpleNamespace(toy=toy, npm_server=npm_server, time_server=time_server, descendants=descendants,
                           wait_gone=wait_gone, kill9=kill9, plugin=mcp_plugin, TOY=TOY,
                           Source=McpServerSourcePy, Server=McpServerConfigPy, Client=McpClientConfigPy)


@pytest.fixture
def mcp_host():
    """Factory: mcp_host(servers, **client_kw) -> a configured PluginHost (shut down after the test)."""
    hosts: list[PluginHost] = []

    def make(servers: list[McpServerConfigPy], **kw) -> PluginHost:
        host = PluginHost.create()
        hosts.append(host)
        host.configure(RunnerConfig(mcp_client_config=McpClientConfigPy(servers, **kw)))
        return host

    yield make
    for host in hosts:
        host.shutdown(None)
