"""Confine this process with kernel primitives, then exec the sandboxed program.

Scope: the one place where isolation is applied. Run as a script by the host interpreter, as root:
`python -I -S confine.py <plan> -- program args...`, the plan a hex `marshal` dump of a dict
(marshal is built in: the launcher imports nothing slow; the same interpreter writes and reads it). In order it: unshares a network
namespace (loopback up or down) and a mount namespace in which /tmp, /var/tmp, /run and /dev/shm
are replaced by private tmpfs (hiding host unix sockets; the workdir and state dir are bound back)
a procfs of its own with hidepid=2 (other users' processes invisible), and the workdir's `.git`
(when present at launch) bind-mounted read-only,
sets rlimits, drops to an unprivileged uid/gid with no supplementary groups (or, where the kernel
interpreter cannot run as one, keeps uid 0 but empties every capability set), sets no_new_privs,
applies a Landlock ruleset (filesystem allow-list, TCP deny when there is no network, abstract
unix socket and signal scoping), and `execve`s the program, so the program keeps this pid.
`python confine.py --probe '<json request>'` reports which of those pieces work here, as JSON.

Non-goals: deciding the plan (sandbox.py does), seccomp filters, a pid namespace, cgroups.
Stdlib only and no agentkit imports: it runs with `-I -S` before anything else is trusted.
Any failure exits 126 with `confine: <what failed>` on stderr, so a plan never half-applies.
"""

from __future__ import annotations

import _socket
import ctypes
import errno
import fcntl
import marshal
import os
import resource
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 0x4000, 1 << 18)
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_ALL_V1 = (1 << 13) - 1
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FILE_ONLY = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX, SCOPE_SIGNAL = 1, 2

RLIMITS = {"as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC, "nofile": resource.RLIMIT_NOFILE,
           "fsize": resource.RLIMIT_FSIZE, "cpu": resource.RLIMIT_CPU, "core": resource.RLIMIT_CORE}
HIDDEN_DIRS = ("/tmp", "/var/tmp", "/run", "/dev/shm")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class ConfineError(Exception):
    """A piece of the plan could not be applied."""


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise ConfineError(f"{what}: {os.strerror(err)} (errno {err})")
    return result


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The running kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    result = _libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(RULESET_VERSION))
    return max(int(result), 0)


def _fs_rights(abi: int) -> int:
    rights = FS_ALL_V1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def apply_landlock(rules: dict, abi: int, deny_tcp: bool) -> None:
    """Restrict this process (and what it execs) to `rules`: {"rw": [...], "ro": [...], "rx": [...]}."""
    handled = _fs_rights(abi)
    read = FS_READ_FILE | FS_READ_DIR
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if abi >= 4 and deny_tcp:
        attr.net, size = NET_BIND_TCP | NET_CONNECT_TCP, 16
    if abi >= 6:
        attr.scoped, size = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL, 24
    ruleset = _check(_libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                                   ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        for kind, rights in (("rw", handled), ("rx", read | FS_EXECUTE), ("ro", read)):
            for path in rules.get(kind, []):
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    allowed = rights if os.path.isdir(path) else rights & FILE_ONLY
                    beneath = _PathBeneath(allowed & handled, fd)
                    _check(_libc.syscall(SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH),
                                         ctypes.byref(beneath), ctypes.c_uint32(0)), f"landlock_add_rule {path}")
                finally:
                    os.close(fd)
        _check(_libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)),
               "landlock_restrict_self")
    finally:
        os.close(ruleset)


def _loopback_up() -> None:
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        flags = 0x1 | 0x8 | 0x40  # IFF_UP | IFF_LOOPBACK | IFF_RUNNING
        fcntl.ioctl(sock.fileno(), 0x8914, struct.pack("16sh22x", b"lo", flags))  # SIOCSIFFLAGS
    finally:
        sock.close()


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def enc(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def _hide_shared_dirs(keep: list[str]) -> None:
    """Private tmpfs over HIDDEN_DIRS; real paths in `keep` that lived below them are bound back."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    hidden = [d for d in HIDDEN_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    under = [p for p in keep if any(p.startswith(d + "/") for d in hidden)]
    fds = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in under if os.path.exists(p)}
    for d in hidden:
        _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")
    for path, fd in fds.items():
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        else:  # a file, e.g. /etc/resolv.conf's target under /run
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
        os.close(fd)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable sets (root stays uid 0
    but can no longer load modules, trace, mount or bypass file permissions)."""
    cap = 0
    while _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    if cap == 0:
        _check(-1, "prctl(PR_CAPBSET_DROP)")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data), "capset")


def apply(plan: dict) -> None:
    """Apply every piece of `plan` to this process (sandbox.plan_sandbox builds it)."""
    flags = (CLONE_NEWNET if plan.get("netns") else 0) | (CLONE_NEWNS if plan.get("hide_dirs") else 0)
    if flags:
        _check(_libc.unshare(ctypes.c_int(flags)), "unshare")
    if plan.get("netns") and plan.get("loopback"):
        _loopback_up()
    if plan.get("hide_dirs"):
        cwd = os.getcwd()
        _hide_shared_dirs(plan.get("keep", []))
        # A procfs instance of our own: other users' processes (the host's, other sessions') are
        # invisible, so their command lines cannot be read.
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
        for path in plan.get("readonly", []):
            if os.path.lexists(path) and not os.path.islink(path):
                _mount(path, path, None, MS_BIND | MS_REC, None)
                _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        # The cwd still points into the covered mount, where relative paths would walk past the
        # private tmpfs (to hidden sockets) and around the read-only .git: re-enter it by path.
        os.chdir(cwd)
    for name, value in plan.get("rlimits", {}).items():
        resource.setrlimit(RLIMITS[name], (int(value), int(value)))
    uid, gid = plan.get("uid"), plan.get("gid")
    if plan.get("drop_caps"):
        drop_capabilities()
    if uid is not None:
        gid = int(gid if gid is not None else uid)
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    if plan.get("no_new_privs"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if plan.get("landlock"):
        apply_landlock(plan["landlock"], int(plan.get("landlock_abi", landlock_abi())), bool(plan.get("deny_tcp")))


def probe(request: dict) -> dict:
    """Which pieces work here: namespaces (in this throwaway process), Landlock, and whether
    `request["python"]` is executable by `request["uid"]` (checked in a forked child)."""
    found: dict = {"root": os.geteuid() == 0, "landlock_abi": landlock_abi(), "netns": False,
                   "mountns": False, "python_ok": None, "why": {}}
    for key, flag in (("netns", CLONE_NEWNET), ("mountns", CLONE_NEWNS)):
        if _libc.unshare(ctypes.c_int(flag)) == 0:
            found[key] = True
        else:
            found["why"][key] = os.strerror(ctypes.get_errno())
    python, uid = request.get("python"), request.get("uid")
    if python and uid is not None and found["root"]:
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setresgid(request["gid"], request["gid"], request["gid"])
                os.setresuid(uid, uid, uid)
                prefix = os.path.dirname(os.path.dirname(python))
                ok = os.access(python, os.X_OK) and os.access(prefix, os.R_OK | os.X_OK)
            except OSError:
                ok = False
            os._exit(0 if ok else 1)
        found["python_ok"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    return found


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "--probe":
        import json

        print(json.dumps(probe(json.loads(argv[1]))))
        return 0
    if len(argv) < 3 or argv[1] != "--":
        print("usage: confine.py <hex marshal plan> -- program [args...]", file=sys.stderr)
        return 2
    program = argv[2:]
    try:
        apply(marshal.loads(bytes.fromhex(argv[0])))
        os.execve(program[0], program, dict(os.environ))
    except (ConfineError, OSError, ValueError, KeyError, EOFError, TypeError) as exc:
        code = getattr(exc, "errno", None)
        detail = f"{exc} ({errno.errorcode.get(code, code)})" if code else str(exc)
        print(f"confine: {detail}", file=sys.stderr)
        return 126
    return 126  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
