"""What isolation applies here, and the launcher prefix that applies it.

Scope: `detect()` probes once per interpreter path (root? network and mount namespaces? Landlock
ABI? can an unprivileged uid execute the kernel interpreter?), `plan_sandbox()` turns a
`SandboxPolicy` plus those facts into a `SandboxPlan` (the JSON that `confine.py` applies and the
command prefix that runs it) and an `IsolationReport` that says exactly what was applied.
Missing pieces degrade explicitly (named in `IsolationReport.missing`); `SandboxPolicy(strict=True)`
raises `SandboxUnavailableError` instead. `AGENTKIT_SANDBOX=off` (also "0", "false", "none") is the
escape hatch: nothing is applied, the host environment is inherited, and the report says "no
isolation". `sweep_uid()` kills every process of a sandbox uid (close, restart, fork bombs).
`can_renew_limits()` says whether the kernel's CPU limit can be renewed per call (kernel.py).

Non-goals: applying anything (confine.py does, in the child), seccomp, cgroups, macOS/Windows.
"""

from __future__ import annotations

import fcntl
import functools
import json
import marshal
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from agentkit.api.agent_options import SandboxPolicy
from agentkit.api.enums import NetworkMode
from agentkit.errors import AgentkitError

__all__ = ["ENV_SANDBOX", "IsolationReport", "SandboxPlan", "SandboxUnavailableError", "detect",
           "kernel_python", "pids_of_uid", "plan_sandbox", "prepare_dirs", "release_uid", "sandbox_disabled", "sweep_uid",
           "violation_hint"]

ENV_SANDBOX = "AGENTKIT_SANDBOX"
ENV_KERNEL_PYTHON = "AGENTKIT_KERNEL_PYTHON"
DEFAULT_KERNEL_PYTHON = "/opt/agentkit/kernel-venv/bin/python"
"""Made by .ci/run from Debian's python3 (`python3 -m venv` + ipykernel, matplotlib, numpy): an
interpreter that lives outside root's 0700 home, so the sandbox uid can execute it."""

CONFINE = str(Path(__file__).with_name("confine.py"))
UID_BASE, UID_SPAN = 790_000, 200_000
SANDBOX_GID = 65534  # nogroup
SYSTEM_RX = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_RO = ("/etc", "/proc", "/sys/devices/system/cpu", "/dev/urandom", "/dev/random")
SYSTEM_RW = ("/dev/null", "/dev/zero", "/dev/tty")


NOT_USED = "seccomp, cgroups, a pid namespace"
"""Mechanisms this sandbox does not apply at all (named in every report, so none is assumed)."""


class SandboxUnavailableError(AgentkitError, RuntimeError):
    """`SandboxPolicy(strict=True)` asked for isolation this machine or process cannot apply."""


def sandbox_disabled() -> bool:
    """True when `AGENTKIT_SANDBOX` switches isolation off (the sabotage mode and escape hatch)."""
    return os.environ.get(ENV_SANDBOX, "").strip().lower() in ("off", "0", "false", "none", "no")


def kernel_python(python_path: str | None) -> str:
    """The interpreter that runs kernels: an explicit path; else `AGENTKIT_KERNEL_PYTHON`; else the
    prepared kernel venv when present; else this interpreter. "python3"/"python" (the
    `CodeExecutionConfig` default) count as "not given"."""
    if python_path and python_path not in ("python3", "python"):
        return python_path
    for candidate in (os.environ.get(ENV_KERNEL_PYTHON), DEFAULT_KERNEL_PYTHON):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


@dataclass(frozen=True)
class HostFacts:
    """What `confine.py --probe` found on this machine (cached per interpreter path)."""

    root: bool
    landlock_abi: int
    netns: bool
    mountns: bool
    python_ok: bool | None
    why: dict[str, str] = field(default_factory=dict)
    library_dirs: tuple[str, ...] = ()


@functools.lru_cache(maxsize=8)
def detect(python: str) -> HostFacts:
    """Probe namespaces, Landlock, whether a sandbox uid may execute `python`, and its library
    dirs (two short subprocesses, once per interpreter path)."""
    request = {"python": python, "uid": UID_BASE, "gid": SANDBOX_GID}
    try:
        out = subprocess.run([sys.executable, "-I", "-S", CONFINE, "--probe", json.dumps(request)],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        found = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return HostFacts(False, 0, False, False, None, {"probe": f"{type(exc).__name__}: {exc}"})
    return HostFacts(found["root"], found["landlock_abi"], found["netns"], found["mountns"],
                     found["python_ok"], found.get("why", {}), _library_dirs(python))


_LIST_PATHS = "import sys\nfor p in sys.path:\n    print(p)\nprint(sys.base_prefix)"


def _library_dirs(python: str) -> tuple[str, ...]:
    """The kernel interpreter's stdlib and site-packages dirs (real paths), for the read-only list.

    Only library dirs: a project root that an editable install put on sys.path stays denied.
    """
    try:
        out = subprocess.run([python, "-c", _LIST_PATHS], capture_output=True, text=True, timeout=30,
                             check=True).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return ()
    *entries, base = [line for line in out if line]
    keep = []
    for entry in entries:
        real = os.path.realpath(entry)
        if real.endswith(("site-packages", "dist-packages")) or real.startswith(os.path.realpath(base) + "/"):
            keep.append(real)
    return tuple(dict.fromkeys(keep))


@dataclass(frozen=True)
class IsolationReport:
    """What was applied to one executor's processes; never more than was applied."""

    enabled: bool
    network: str
    user: str
    filesystem: str
    limits: str
    environment: str
    no_new_privs: bool
    missing: tuple[str, ...] = ()

    @property
    def level(self) -> str:
        """"full", "partial" (something in `missing`) or "none"."""
        return "none" if not self.enabled else ("partial" if self.missing else "full")

    def describe(self) -> str:
        """One line for tool descriptions and results."""
        if not self.enabled:
            return ("no isolation: code runs as the host user with the host's network, files and "
                    f"environment ({self.missing[0] if self.missing else 'sandbox off'})")
        parts = [f"network: {self.network}", f"user: {self.user}", f"files: {self.filesystem}",
                 f"limits: {self.limits}", f"env: {self.environment}"]
        if self.no_new_privs:
            parts.append("no_new_privs")
        text = f"sandbox ({self.level}): " + "; ".join(parts)
        text += f"; not applied: {', '.join(self.missing)}" if self.missing else ""
        return text + "; not used: " + NOT_USED


@dataclass(frozen=True)
class SandboxPlan:
    """How to start one executor's processes: `prefix + argv`, in `env`, as `uid`."""

    prefix: tuple[str, ...]
    env: dict[str, str]
    uid: int | None
    gid: int | None
    report: IsolationReport
    plan: dict = field(default_factory=dict)
    uid_lock: int | None = None

    def command(self, argv: list[str]) -> list[str]:
        """`argv` wrapped by the confine launcher (unchanged when nothing is applied)."""
        return [*self.prefix, *argv]


def _limits(policy: SandboxPolicy, timeout_s: float) -> dict[str, int]:
    cpu = max(int(policy.max_cpu_secs), int(timeout_s) + 1)
    return {"as": policy.max_memory_mb << 20, "nproc": policy.max_procs, "nofile": policy.max_open_fds,
            "fsize": policy.max_file_sz_mb << 20, "cpu": cpu, "core": 0}


def _sandbox_env(policy: SandboxPolicy, state: Path, extra_env: dict[str, str]) -> dict[str, str]:
    home = state / "home"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(state / "tmp"),
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONUNBUFFERED": "1", "MPLCONFIGDIR": str(home / ".config" / "matplotlib"),
           "IPYTHONDIR": str(home / ".ipython"), "JUPYTER_RUNTIME_DIR": str(state / "tmp"),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MALLOC_ARENA_MAX": "2", "TERM": "dumb"}
    for entry in policy.extra_env:
        name, sep, value = entry.partition("=")
        if sep:
            env[name] = value
        elif name in os.environ:
            env[name] = os.environ[name]
    env.update(extra_env)
    return env


_HINTS = (
    (("Errno 101", "Network is unreachable", "Errno -3", "Errno -2", "Name or service not known",
      "Temporary failure in name resolution"), "network", "network access is disabled in this sandbox"),
    (("Errno 13", "Permission denied", "Errno 1]", "Operation not permitted", "Errno 30", "Read-only file system"),
     "files", "only the working directory is writable; the interpreter's libraries are read-only and other paths are denied"),
    (("MemoryError", "Cannot allocate memory"), "memory", "memory is limited ({limits})"),
    (("Resource temporarily unavailable", "BlockingIOError"), "processes", "the number of processes is limited ({limits})"),
)


def violation_hint(report: IsolationReport, text: str) -> str | None:
    """A one-line "[sandbox] ..." explanation when `text` (an error) looks like a sandbox denial."""
    if not report.enabled:
        return None
    for needles, _kind, hint in _HINTS:
        if any(n in text for n in needles):
            return "[sandbox] " + hint.format(limits=report.limits)
    return None


UID_LOCKS = Path(tempfile.gettempdir()) / "agentkit-sandbox-uids"


def new_uid() -> tuple[int, int]:
    """A uid no other executor (of any process on this host) holds, and the fd of its lock file.

    Its processes are counted together (RLIMIT_NPROC) and killed together (sweep_uid), so two
    executors must never share one: each holds an exclusive flock on `UID_LOCKS/<uid>` until
    `release_uid`, and a uid that still has processes is skipped.
    """
    UID_LOCKS.mkdir(mode=0o700, exist_ok=True)
    for _ in range(64):
        uid = UID_BASE + 1 + secrets.randbelow(UID_SPAN - 1)
        fd = os.open(UID_LOCKS / str(uid), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if not pids_of_uid(uid):
            return uid, fd
        os.close(fd)
    raise SandboxUnavailableError("no free sandbox uid after 64 tries: too many stray sandbox processes?")


def release_uid(plan: SandboxPlan) -> None:
    """Let another executor take this plan's uid (call after its processes were swept)."""
    if plan.uid_lock is not None:
        os.close(plan.uid_lock)
        object.__setattr__(plan, "uid_lock", None)


CAP_SYS_RESOURCE = 24


def can_renew_limits() -> bool:
    """Whether this process may raise another process's hard rlimits (`prlimit`): CAP_SYS_RESOURCE,
    which root has unless a container dropped it; without it the kernel's CPU limit is cumulative."""
    try:
        with open("/proc/self/status") as f:
            caps = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return False
    return bool(caps >> CAP_SYS_RESOURCE & 1)


def plan_sandbox(policy: SandboxPolicy | None, python: str, workdir: Path, state: Path, *,
                 timeout_s: float = 60.0, extra_env: dict[str, str] | None = None) -> SandboxPlan:
    """Decide what applies to an executor whose workdir is `workdir` and private state dir `state`.

    Raises `SandboxUnavailableError` when `policy.strict` and a piece is missing.
    """
    policy = policy or SandboxPolicy()
    extra_env = dict(extra_env or {})
    if sandbox_disabled():
        env = {**os.environ, **extra_env}
        report = IsolationReport(False, "host", f"uid {os.geteuid()}", "host", "none", "inherited", False,
                                 (f"{ENV_SANDBOX}=off",))
        if policy.strict:
            raise SandboxUnavailableError(f"SandboxPolicy(strict=True) but {ENV_SANDBOX}=off: unset it")
        return SandboxPlan((), env, None, None, report)
    facts = detect(python)
    missing: list[str] = []
    want_net = policy.network != NetworkMode.Full
    netns = want_net and facts.root and facts.netns
    if want_net and not netns:
        missing.append("network namespace (" + ("needs root" if not facts.root else facts.why.get("netns", "unavailable")) + ")")
    drop = facts.root and bool(facts.python_ok)
    if not drop:
        missing.append("unprivileged uid (" + ("needs root" if not facts.root else
                       f"{python} is not executable by an unprivileged user; set {ENV_KERNEL_PYTHON}") + ")")
    hide = facts.root and facts.mountns
    if not hide:
        missing.append("private /tmp, /run (mount namespace)")
    if facts.landlock_abi < 1:
        missing.append("Landlock filesystem allow-list (kernel without Landlock)")
    if policy.strict and missing:
        raise SandboxUnavailableError("SandboxPolicy(strict=True) but these are unavailable: " + "; ".join(missing)
                                      + ". Run as root on Linux with Landlock, or set strict=False")
    uid, uid_lock = new_uid() if drop else (None, None)
    gid = SANDBOX_GID if drop else None
    real = [str(Path(p).resolve()) for p in (workdir, state)]
    prefix_dir = str(Path(python).parent.parent)
    rw = [*real, *SYSTEM_RW, *(str(Path(p).resolve()) for p in policy.extra_fs_write)]
    if hide:
        rw.append("/dev/shm")
    rx = [*SYSTEM_RX, prefix_dir, str(Path(prefix_dir).resolve()), str(Path(python).resolve().parent.parent),
          *facts.library_dirs]
    ro = [*SYSTEM_RO, *(str(Path(p).resolve()) for p in policy.extra_fs_read)]
    if not want_net:  # the host network: keep DNS working when resolv.conf points into /run
        ro.append(os.path.realpath("/etc/resolv.conf"))
    limits = _limits(policy, timeout_s)
    plan = {"netns": netns, "loopback": netns and policy.network == NetworkMode.Loopback,
            "deny_tcp": policy.network == NetworkMode.NoNetwork,
            "hide_dirs": hide, "keep": [*rw, *rx, *ro], "readonly": [os.path.join(real[0], ".git")],
            "rlimits": limits, "cpu_per_call": can_renew_limits(), "uid": uid, "gid": gid, "drop_caps": facts.root and not drop,
            "no_new_privs": True, "landlock_abi": facts.landlock_abi,
            "landlock": {"rw": rw, "rx": rx, "ro": ro} if facts.landlock_abi >= 1 else None}
    network = ("none (private network namespace, loopback down)" if netns and not plan["loopback"]
               else "private loopback only (own network namespace)" if netns else "host network")
    user = ("unprivileged uid (one per executor), no groups" if drop else
            "uid 0 with no capabilities (uid not dropped)" if facts.root else f"uid {os.geteuid()} (not dropped)")
    files = (f"Landlock ABI {facts.landlock_abi} allow-list: workdir read-write; the interpreter, /usr, "
             "/etc and /proc read-only; everything else denied" if facts.landlock_abi >= 1
             else "host permissions only")
    if hide:
        files += "; private /tmp and /run; /proc lists only its own processes; the workdir's .git read-only"
    nproc = f"procs {policy.max_procs}" + ("" if drop else " (not enforced for root)")
    limit_text = (f"memory {policy.max_memory_mb} MiB, {nproc}, open files {policy.max_open_fds}, "
                  f"file size {policy.max_file_sz_mb} MiB, cpu {limits['cpu']} s "
                  + ("per call" if plan["cpu_per_call"] else "per interpreter in total (renewing it per call "
                     "needs CAP_SYS_RESOURCE; when used up, the interpreter is replaced)"))
    env = _sandbox_env(policy, state, extra_env)
    report = IsolationReport(True, network, user, files, limit_text, "clean (no host variables)", True,
                             tuple(missing))
    prefix = (sys.executable, "-I", "-S", CONFINE, marshal.dumps(plan).hex(), "--")
    return SandboxPlan(prefix, env, uid, gid, report, plan, uid_lock)


def prepare_dirs(plan: SandboxPlan, workdir: Path, state: Path) -> None:
    """Create the workdir and state dirs (home, tmp, sock) owned by the sandbox uid, mode 0700."""
    for path in (workdir, state / "home", state / "tmp", state / "sock"):
        path.mkdir(parents=True, exist_ok=True)
    if plan.uid is not None:
        gid = SANDBOX_GID if plan.gid is None else plan.gid
        for path in (state, state / "home", state / "tmp", state / "sock"):
            os.chown(path, plan.uid, gid)
            os.chmod(path, 0o700)
        owner = workdir.stat().st_uid
        # An empty dir, or one a previous sandbox owned, becomes this executor's; a populated
        # directory of another user keeps its owner (the sandbox then may not write there).
        if owner != plan.uid and (owner >= UID_BASE or not any(workdir.iterdir())):
            os.chown(workdir, plan.uid, gid)
            os.chmod(workdir, 0o700)


def pids_of_uid(uid: int, sid: int | None = None) -> list[int]:
    """Live (non-zombie) processes whose real uid is `uid`, only those in session `sid` if given."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("State:") and "Z" in line:
                        break
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            found.append(int(name))
                        break
        except (OSError, ValueError):
            continue
    if sid is not None:
        kept = []
        for pid in found:
            try:
                if os.getsid(pid) == sid:
                    kept.append(pid)
            except OSError:
                pass
        found = kept
    return found


def sweep_uid(uid: int | None, *, sid: int | None = None, deadline_s: float = 5.0) -> int:
    """SIGKILL every process whose real uid is `uid` (only those in session `sid` when given),
    repeating until none is left (fork bombs respawn); returns how many were killed."""
    if uid is None or uid < UID_BASE:
        return 0
    killed, end = 0, time.monotonic() + deadline_s
    while time.monotonic() < end:
        pids = pids_of_uid(uid, sid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    return killed
