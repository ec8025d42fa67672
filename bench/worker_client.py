"""The driver side of bench/workers.py, and the CPU accounting around every request.

Scope: `Worker` (spawn one engine worker subprocess, speak its JSON-lines protocol, close it),
`WorkerError`, and /proc readings: the machine's busy CPU seconds, a process's CPU seconds and
its memory. Non-goals: what to send (bench/compare_run.py), the worker itself (bench/workers.py).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = os.path.join(HERE, "workers.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
perf = time.perf_counter


# ---- CPU accounting -------------------------------------------------------------------------------------
def system_busy_s() -> float:
    """Busy CPU seconds of the whole machine (all CPUs): user+nice+system+irq+softirq+steal."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user_, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user_ + nice + system + irq + softirq + steal) / CLK_TCK


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def vm_status(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


# ---- workers ----------------------------------------------------------------------------------------------
class WorkerError(RuntimeError):
    """A worker died, timed out or answered with an error."""


class Worker:
    """One engine worker subprocess speaking the JSON-lines protocol of bench/workers.py."""

    def __init__(self, name: str, engine: str, flags: list[str], log_dir: str, timeout_s: float) -> None:
        self.name, self.engine = name, engine
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in close()
        self._buf = b""
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
        cmd = [sys.executable, WORKERS, engine, *flags]
        s0, d0, t0 = system_busy_s(), own_cpu_s(), perf()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env=env, cwd=os.path.dirname(HERE))
        ready = self._read(timeout_s)
        self.spawn_to_ready_s = perf() - t0
        other = (system_busy_s() - s0) - process_cpu_s(self.proc.pid) - (own_cpu_s() - d0)
        if not ready.get("ready"):
            self.close()
            raise WorkerError(f"{name} failed to start: {ready.get('error')} (log: {self.log_path})")
        self.ready = ready
        self.ready["spawn_to_ready_s"] = self.spawn_to_ready_s
        self.ready["other_cpu_during_load_s"] = other
        self.pid = self.proc.pid

    def _read(self, timeout_s: float) -> dict[str, Any]:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"{self.name}: no answer within {timeout_s:.0f} s (log: {self.log_path})")
            readable, _, _ = select.select([fd], [], [], min(left, 5.0))
            if not readable:
                continue
            data = os.read(fd, 1 << 20)
            if not data:
                raise WorkerError(f"{self.name} exited (rc {self.proc.poll()}); log tail:\n{self.log_tail()}")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, cmd: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        return self._read(timeout_s)

    def log_tail(self, n: int = 15) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call({"cmd": "quit"}, 30)
                self.proc.wait(30)
            except (WorkerError, OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait()
        self._log.close()
