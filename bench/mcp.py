"""MCP client plugin: start time with 3 servers (one broken), call latency, respawn time after kill -9.

Servers: `@modelcontextprotocol/server-everything` (node, from `.ci/npm`), the in-repo toy server
(Python, `tests/plugins/mcp/toy_server.py`) and a broken one (a toy server that exits at start).
Each figure comes with a reference measured in the same run:
- start: the plugin connects all three in parallel (`PluginHost.configure`); reference: the two
  working servers connected one after the other (the sum a sequential client pays);
- call latency: `echo` through the plugin (`PluginHost.execute_tool`: thread hop, semaphore,
  result conversion); reference: the same call with a bare `mcp.Client` in asyncio;
- respawn, two ways, each from the moment of the SIGKILL: (a) one call made at once (it waits for
  the respawn the kill set off, then runs; goal <= 2 s), and (b) no call: until the plugin has the
  new child connected and its tools listed (the respawn starts when the crash is seen, not on the
  next call), then the first call's own latency. Reference: a fresh start of that server with a
  bare `mcp.Client` (spawn + initialize + tools/list), which any respawn has to pay; what the
  respawn adds on top of it is the plugin's own cost.
Run: .venv/bin/python bench/mcp.py [--reps 5] [--calls 50]  (needs `bash .ci/mcp-servers.sh`)
Prints a table, writes bench/results/mcp.json and bench/results/mcp.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this file is named mcp.py: keep its folder off the path, or it would shadow the mcp SDK
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from agentkit.api.agent_options import McpClientConfigPy, McpServerConfigPy, McpServerSourcePy  # noqa: E402
from agentkit.config import RunnerConfig  # noqa: E402
from agentkit.plugin_host import PluginHost  # noqa: E402
from agentkit.tools import ToolCall  # noqa: E402

TOY = str(ROOT / "tests" / "plugins" / "mcp" / "toy_server.py")
EVERYTHING = ROOT / ".ci" / "npm" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"


def servers() -> list[McpServerConfigPy]:
    if not EVERYTHING.exists():
        sys.exit(f"{EVERYTHING} is missing: run `bash .ci/mcp-servers.sh` first")
    return [
        McpServerConfigPy("ev", "everything", McpServerSourcePy.Process("node", [str(EVERYTHING), "stdio"], None, None)),
        McpServerConfigPy("toy", "toy", McpServerSourcePy.Process(sys.executable, [TOY, "--name", "toy"], None, None)),
        McpServerConfigPy("broken", "broken", McpServerSourcePy.Process(
            sys.executable, [TOY, "--crash-on-start"], None, None)),
    ]


def children() -> dict[int, str]:
    """{pid: cmdline} of this process's live children."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                state, ppid = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[:2]
                if int(ppid) == os.getpid() and state != "Z":
                    out[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError):
                pass
    return out


def kill9(marker: str) -> None:
    [pid] = [p for p, cmd in children().items() if marker in cmd]
    os.kill(pid, signal.SIGKILL)
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except OSError:
            return
        time.sleep(0.005)


def start_host(configs: list[McpServerConfigPy]) -> tuple[PluginHost, float]:
    host = PluginHost.create(entry_points=False)
    t = time.perf_counter()
    host.configure(RunnerConfig(mcp_client_config=McpClientConfigPy(configs, retry_interval_secs=3600)))
    return host, time.perf_counter() - t


def call(host: PluginHost, name: str, args: dict) -> float:
    t = time.perf_counter()
    result = host.execute_tool(ToolCall(name, json.dumps(args)))
    took = time.perf_counter() - t
    assert result is not None and result.status == "ok", result
    return took


async def bare_latency(config: McpServerConfigPy, name: str, args: dict, n: int) -> list[float]:
    from mcp import Client, StdioServerParameters

    src = config.source
    params = StdioServerParameters(command=src.command, args=list(src.args or []))
    out = []
    async with Client(params, mode="legacy", cache=None) as client:
        await client.call_tool(name, args)
        for _ in range(n):
            t = time.perf_counter()
            await client.call_tool(name, args)
            out.append(time.perf_counter() - t)
    return out


async def bare_start(config: McpServerConfigPy) -> float:
    """Seconds for a bare mcp.Client to spawn the server, initialize and list its tools (close not counted)."""
    from mcp import Client, StdioServerParameters

    src = config.source
    params = StdioServerParameters(command=src.command, args=list(src.args or []))
    start = time.perf_counter()
    async with Client(params, mode="legacy", cache=None) as client:
        await client.list_tools()
        took = time.perf_counter() - start
    return took


def respawn_in_background(host: PluginHost, plugin, sid: str, marker: str, args: dict) -> tuple[float, float, float]:
    """Kill the child and make no call: (seconds until the plugin has it connected again, the part of them
    outside the new session's spawn-to-tools-listed time, the first call's seconds)."""
    [before] = [s.restarts for s in plugin.mcp_status() if s.id == sid]
    t = time.perf_counter()
    kill9(marker)
    while True:
        [st] = [s for s in plugin.mcp_status() if s.id == sid]
        if st.state == "connected" and st.restarts > before:
            back = time.perf_counter() - t
            outside = back - (st.connect_time_s or 0.0)
            break
        if time.perf_counter() - t > 30:
            raise RuntimeError(f"{sid}: not back 30 s after the kill: {st}")
        time.sleep(0.002)
    return back, outside, call(host, f"{sid}_echo", args)


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    ev, toy, broken = servers()
    calls = {"ev": ("echo", {"message": "hi"}), "toy": ("echo", {"text": "hi"})}
    r: dict[str, list[float]] = {k: [] for k in (
        "start_parallel_3", "start_seq_ref", "latency_ev", "latency_toy", "bare_ev", "bare_toy",
        "respawn_ev", "respawn_toy", "alone_ev", "alone_toy", "back_ev", "back_toy", "after_ev", "after_toy",
        "bare_start_ev", "bare_start_toy", "outside_ev", "outside_toy")}
    for rep in range(args.reps):
        host, took = start_host([ev, toy, broken])
        r["start_parallel_3"].append(took)
        states = {s.id: s.state for s in host.pm.get_plugin("agentkit.plugins.mcp").mcp_status()}
        assert states == {"ev": "connected", "toy": "connected", "broken": "failed"}, states
        for sid, key in (("ev", "latency_ev"), ("toy", "latency_toy")):
            name, a = calls[sid]
            tool = "ev_echo" if sid == "ev" else "toy_echo"
            call(host, tool, a)
            r[key] += [call(host, tool, a) for _ in range(args.calls // args.reps)]
        plugin = host.pm.get_plugin("agentkit.plugins.mcp")
        for sid, marker in (("ev", "server-everything"), ("toy", "--name toy")):
            t = time.perf_counter()
            kill9(marker)
            call(host, f"{sid}_echo", calls[sid][1])
            r[f"respawn_{sid}"].append(time.perf_counter() - t)
            back, outside, after = respawn_in_background(host, plugin, sid, marker, calls[sid][1])
            r[f"back_{sid}"].append(back)
            r[f"outside_{sid}"].append(outside)
            r[f"after_{sid}"].append(after)
        host.shutdown(None)
        seq = 0.0
        for sid, cfg in (("ev", ev), ("toy", toy)):
            h, t = start_host([cfg])
            r[f"alone_{sid}"].append(t)
            seq += t
            h.shutdown(None)
        r["start_seq_ref"].append(seq)
        for sid, cfg in (("ev", ev), ("toy", toy)):
            r[f"bare_{sid}"] += asyncio.run(bare_latency(cfg, calls[sid][0], calls[sid][1], args.calls // args.reps))
            r[f"bare_start_{sid}"].append(asyncio.run(bare_start(cfg)))
        print(f"rep {rep + 1}/{args.reps}: start {took:.2f} s (sequential reference {seq:.2f} s), "
              f"respawn + call ev {r['respawn_ev'][-1]:.3f} s, toy {r['respawn_toy'][-1]:.3f} s; back without "
              f"a call ev {r['back_ev'][-1]:.3f} s, toy {r['back_toy'][-1]:.3f} s; bare fresh start ev "
              f"{r['bare_start_ev'][-1]:.3f} s, toy {r['bare_start_toy'][-1]:.3f} s", flush=True)
        assert not children(), children()

    rows = [
        ("start: 3 servers in parallel, one broken", med(r["start_parallel_3"]),
         "the 2 working ones one after the other", med(r["start_seq_ref"]), "s"),
        ("call latency: echo, server-everything (node)", med(r["latency_ev"]) * 1e3,
         "bare mcp.Client, same call", med(r["bare_ev"]) * 1e3, "ms"),
        ("call latency: echo, toy server (Python)", med(r["latency_toy"]) * 1e3,
         "bare mcp.Client, same call", med(r["bare_toy"]) * 1e3, "ms"),
    ]
    for sid, what in (("ev", "server-everything"), ("toy", "toy server (Python)")):
        rows += [
            (f"respawn: kill -9, call at once, result: {what}", med(r[f"respawn_{sid}"]),
             "fresh start, bare mcp.Client", med(r[f"bare_start_{sid}"]), "s"),
            (f"respawn: kill -9 to reconnected, no call: {what}", med(r[f"back_{sid}"]),
             "fresh start through the plugin", med(r[f"alone_{sid}"]), "s"),
            (f"first call once reconnected: {what}", med(r[f"after_{sid}"]) * 1e3,
             "call latency before the kill", med(r[f"latency_{sid}"]) * 1e3, "ms"),
        ]
    lines = ["| measurement (median) | agentkit | reference (same run) | reference value |",
             "|---|---|---|---|"]
    for what, value, ref, ref_value, unit in rows:
        fmt = "{:.1f} ms" if unit == "ms" else "{:.3f} s"
        lines.append(f"| {what} | {fmt.format(value)} | {ref} | {fmt.format(ref_value)} |")
    worst = max(max(r["respawn_ev"]), max(r["respawn_toy"]))
    own = r["outside_ev"] + r["outside_toy"]
    lines.append(f"\nRespawn goal <= 2 s: worst of {2 * args.reps} respawns {worst:.3f} s "
                 f"({'met' if worst <= 2 else 'missed'}). Of kill -9 to reconnected, the part outside the new session's "
                 f"spawn-to-tools-listed time (noticing the crash, starting the respawn, bookkeeping): median "
                 f"{med(own) * 1e3:.1f} ms, worst {max(own) * 1e3:.1f} ms. {args.reps} reps, {args.calls // args.reps} calls "
                 f"per server per rep; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mcp.md").write_text(table + "\n")
    (out / "mcp.json").write_text(json.dumps({
        "samples_s": r, "reps": args.reps, "calls": args.calls,
        "summary": [{"what": w, "value": v, "reference": ref, "reference_value": rv, "unit": u}
                    for w, v, ref, rv, u in rows],
        "env": {"python": platform.python_version(), "cpus": os.cpu_count(), "loadavg": os.getloadavg()},
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
