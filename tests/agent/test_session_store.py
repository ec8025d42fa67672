"""Tests of agentkit.session_store: the in-memory LRU/TTL store, the directory store (atomic
writes, cross-process locking with two real processes, quarantine of corrupt files) and
`open_session_store`.

Reference: runner-api.md §2.8. Fast (no sleeping; the clock is injected), offline, no torch.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agentkit.errors import SessionError
from agentkit.session_directory import DirectorySessionStore, open_session_store
from agentkit.session_store import MemorySessionStore, SessionCorruptError, SessionStore
from agentkit.sessions import Session

SYS = {"role": "system", "content": "sys"}
U1 = {"role": "user", "content": "hi"}
TC1 = {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function",
                                                           "function": {"name": "f", "arguments": {}}}]}
T1 = {"role": "tool", "name": "f", "content": "42"}
A1 = {"role": "assistant", "content": "42 it is"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sess(sid: str, *contents: str) -> Session:
    return Session(sid, [{"role": "user", "content": c} for c in contents])


# --- MemorySessionStore -----------------------------------------------------------------------


def test_memory_store_lru_cap():
    store = MemorySessionStore(max_sessions=2, idle_ttl_s=None)
    store.put(sess("a", "1"))
    store.put(sess("b", "2"))
    assert store.get("a") is not None  # touch a -> b is least recently used
    store.put(sess("c", "3"))
    assert store.ids() == ["c", "a"]
    assert store.get("b") is None
    store.put(sess("a", "1b"))  # replacing does not evict
    assert sorted(store.ids()) == ["a", "c"] and store.get("a").messages[0]["content"] == "1b"


def test_memory_store_ttl_expiry_with_injected_clock():
    clock = FakeClock()
    store = MemorySessionStore(idle_ttl_s=10, clock=clock)
    store.put(sess("a", "x"))
    store.put(sess("b", "y"))
    clock.now += 6
    assert store.get("a") is not None  # refreshes a only
    clock.now += 6  # a idle 6 s, b idle 12 s
    assert store.ids() == ["a"]
    assert store.get("b") is None and not store.delete("b")
    clock.now += 3.9  # a idle 9.9 s
    assert store.get("a") is not None
    clock.now += 10
    assert store.get("a") is None and store.ids() == [] and len(store) == 0


def test_memory_store_copy_isolation():
    store = MemorySessionStore()
    s = sess("a", "one")
    store.put(s)
    s.messages.append({"role": "user", "content": "mutated after put"})
    s.approved_tools.add("shell")
    got = store.get("a")
    assert [m["content"] for m in got.messages] == ["one"] and got.approved_tools == set()
    got.messages[0]["content"] = "mutated copy"
    next(iter(store.sessions())).plugin_state["p"] = {"k": 1}
    again = store.get("a")
    assert again.messages[0]["content"] == "one" and again.plugin_state == {}


@pytest.mark.parametrize("kind, per_thread", [("memory", 50), ("directory", 15)])
def test_update_is_atomic_across_threads(tmp_path, kind, per_thread):
    store = MemorySessionStore() if kind == "memory" else DirectorySessionStore(tmp_path)

    def work(t: int) -> None:
        for k in range(per_thread):
            store.update("shared", lambda s, t=t, k=k: s.messages.append({"role": "user", "content": f"{t}-{k}"}))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(store.get("shared").messages) == 4 * per_thread  # 200 in memory, 60 on disk


def test_memory_store_find_by_prefix_and_runner_helpers():
    clock = FakeClock()
    store = MemorySessionStore(max_sessions=2, idle_ttl_s=None, clock=clock)
    store.put(Session("agent", [SYS, U1, TC1, T1, A1]))
    store.put(sess("other", "zzz"))
    found = store.find_by_prefix([SYS, U1, A1, {"role": "user", "content": "next"}])
    assert found is not None and found.id == "agent"
    store.put(sess("third", "q"))  # find_by_prefix refreshed "agent", so "other" is evicted
    assert sorted(store.ids()) == ["agent", "third"]
    assert store.find_by_prefix([U1]) is None

    assert store.export_json("missing") is None
    exported = json.loads(store.export_json("agent"))
    assert exported["messages"] == [SYS, U1, TC1, T1, A1] and exported["version"] == 1
    store.import_json("copy", json.dumps({"messages": [U1, A1]}))  # a mistralrs export
    assert store.get("copy").messages == [U1, A1]
    with pytest.raises(ValueError, match="Failed to parse session JSON"):
        store.import_json("copy", "{oops")
    assert store.get("copy").messages == [U1, A1]  # a failed import changes nothing
    assert store.delete("copy") and not store.delete("copy")


def test_memory_store_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_sessions"):
        MemorySessionStore(max_sessions=0)
    with pytest.raises(ValueError, match="idle_ttl_s"):
        MemorySessionStore(idle_ttl_s=-1)
    with pytest.raises(TypeError, match="Session"):
        MemorySessionStore().put({"id": "x"})  # type: ignore[arg-type]


# --- DirectorySessionStore --------------------------------------------------------------------


def test_directory_store_round_trip(tmp_path):
    root = tmp_path / "nested" / "sessions"
    store = DirectorySessionStore(root)  # created if missing
    assert root.is_dir()
    s = Session("s1", [SYS, U1, TC1, T1, A1], plugin_state={"p": {"k": [1, 2]}}, approved_tools={"f"})
    store.put(s)
    assert (root / "s1.json").is_file()
    assert store.get("s1") == s
    assert store.get("nope") is None
    assert store.ids() == ["s1"] and "s1" in store
    # a second store instance (another process would be the same) sees it
    assert DirectorySessionStore(str(root)).get("s1") == s
    assert store.delete("s1") and not store.delete("s1")
    assert store.ids() == [] and not (root / "s1.json").exists()


def test_directory_store_ids_are_encoded_safely(tmp_path):
    store = DirectorySessionStore(tmp_path / "d")
    odd = ["user/1", "..", ".hidden", "a b:c%2F", "ü-ñ", "x" * 128, "..\\evil"]
    for sid in odd:
        store.put(sess(sid, sid))
    assert sorted(store.ids()) == sorted(odd)
    for sid in odd:
        assert store.get(sid).messages[0]["content"] == sid
    # every file stays directly inside the store directory and none is hidden
    names = [p.name for p in (tmp_path / "d").iterdir() if p.is_file()]
    assert len(names) == len(odd) and all(n.endswith(".json") and not n.startswith(".") for n in names)
    assert not any(p.exists() for p in [tmp_path / "evil.json", tmp_path / "1.json"])
    for bad in ["", "x" * 129, "a\x00b", "line\nbreak"]:
        with pytest.raises(ValueError, match="session id"):
            store.get(bad)
        if bad:
            with pytest.raises(ValueError, match="session id"):
                store.put(Session(bad))
    with pytest.raises(TypeError, match="session id"):
        store.get(5)  # type: ignore[arg-type]
    assert sorted(store.ids()) == sorted(odd)


def test_directory_store_crash_during_replace_keeps_old_file(tmp_path, monkeypatch):
    root = tmp_path / "d"
    store = DirectorySessionStore(root)
    store.put(sess("s", "old"))
    before = (root / "s.json").read_bytes()

    def boom(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated crash"):
        store.put(sess("s", "new"))
    monkeypatch.undo()
    assert (root / "s.json").read_bytes() == before
    assert store.get("s").messages[0]["content"] == "old"
    assert store.ids() == ["s"]
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == ["s.json"]  # temp file cleaned up


def test_directory_store_crash_during_fsync_and_stale_temp_files(tmp_path, monkeypatch):
    root = tmp_path / "d"
    store = DirectorySessionStore(root)
    store.put(sess("s", "old"))
    real_fsync = os.fsync
    calls = []

    def fsync_fail(fd):
        calls.append(fd)
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fsync_fail)
    with pytest.raises(OSError, match="disk full"):
        store.put(sess("s", "new"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert calls and store.get("s").messages[0]["content"] == "old"
    # a temp file left by a process that died mid-write is not a session
    (root / ".s.json.abc123.tmp").write_text('{"messages": [')
    assert store.ids() == ["s"] and [x.id for x in store.sessions()] == ["s"]


def test_directory_store_update_and_failed_fn(tmp_path):
    store = DirectorySessionStore(tmp_path)
    out = store.update("u", lambda s: s.messages.append(U1))
    assert out.messages == [U1] and store.get("u").messages == [U1]
    store.update("u", lambda s: Session("u", [U1, A1]))
    assert store.get("u").messages == [U1, A1]

    def fail(s):
        s.messages.append(A1)
        raise RuntimeError("fn failed")

    with pytest.raises(RuntimeError, match="fn failed"):
        store.update("u", fail)
    assert store.get("u").messages == [U1, A1]
    with pytest.raises(ValueError, match="returned session"):
        store.update("u", lambda s: Session("other"))


def test_directory_store_corrupt_file_is_quarantined(tmp_path, caplog):
    root = tmp_path / "d"
    store = DirectorySessionStore(root)
    store.put(sess("good", "fine"))
    garbage = b'{"messages": [{"role": "user", "content": "trunc'
    (root / "bad.json").write_bytes(garbage)

    with pytest.raises(SessionCorruptError) as info:
        store.get("bad")
    err = info.value
    assert isinstance(err, SessionError) and isinstance(err, ValueError)
    qpath = Path(err.quarantined_path)
    assert qpath.parent == root / "quarantine" and qpath.name.startswith("bad.json.")
    assert qpath.read_bytes() == garbage  # moved, never deleted, bytes preserved
    msg = str(err)
    assert "'bad'" in msg and str(qpath) in msg and "invalid JSON" in msg
    assert err.session_id == "bad" and "invalid JSON" in err.reason
    assert not (root / "bad.json").exists()
    assert store.get("bad") is None  # afterwards it is simply absent
    assert store.get("good").messages[0]["content"] == "fine"
    assert store.ids() == ["good"]

    # valid JSON but an invalid session; sessions() skips it with a warning
    (root / "bad2.json").write_text(json.dumps({"messages": 3}))
    with caplog.at_level(logging.WARNING, logger="agentkit.session_store"):
        listed = [s.id for s in store.sessions()]
    assert listed == ["good"]
    assert "bad2" in caplog.text
    quarantined = sorted(p.name for p in (root / "quarantine").iterdir())
    assert len(quarantined) == 2 and quarantined[1].startswith("bad2.json.")
    # quarantining the same id twice never overwrites the first copy
    (root / "bad.json").write_bytes(b"again")
    with pytest.raises(SessionCorruptError):
        store.get("bad")
    assert len(list((root / "quarantine").iterdir())) == 3
    assert sorted(p.read_bytes() for p in (root / "quarantine").glob("bad.json.*")) == sorted([garbage, b"again"])


def test_directory_store_update_refuses_corrupt_session(tmp_path):
    store = DirectorySessionStore(tmp_path)
    (tmp_path / "c.json").write_text("not json")
    called = []
    with pytest.raises(SessionCorruptError, match="'c'"):
        store.update("c", called.append)
    assert called == []


WORKER = r"""
import os, sys, time
from agentkit.session_directory import DirectorySessionStore
from agentkit.sessions import Session

root, go, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = DirectorySessionStore(root)
print("ready", flush=True)
deadline = time.monotonic() + 20
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.001)
for k in range(n):
    store.put(Session(f"{name}-{k % 3}", [{"role": "user", "content": f"{name} write {k}"}]))
    store.update("shared", lambda s: s.messages.append({"role": "user", "content": f"{name}-{k}"}))
    own = store.get(f"{name}-{k % 3}")
    assert own.messages[0]["content"] == f"{name} write {k}", own.messages
print("done", flush=True)
"""


def test_two_processes_write_concurrently(tmp_path):
    root, go = tmp_path / "store", tmp_path / "go"
    n = 30
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(root), str(go), name, str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for name in ("p1", "p2")
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        go.touch()
        # meanwhile this process reads the contended session: never torn, never corrupt
        reader = DirectorySessionStore(root)
        reads = 0
        while any(p.poll() is None for p in procs):
            s = reader.get("shared")
            if s is not None:
                assert all(m["role"] == "user" for m in s.messages)
            reads += 1
        results = [p.communicate(timeout=30) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.strip() == "done", err
    assert reads > 0

    store = DirectorySessionStore(root)
    assert not (root / "quarantine").exists()
    for f in root.glob("*.json"):
        json.loads(f.read_text())  # every file parses
    assert sorted(store.ids()) == sorted(["shared", *(f"p{i}-{r}" for i in (1, 2) for r in range(3))])
    for name in ("p1", "p2"):
        for r in range(3):
            last = max(k for k in range(n) if k % 3 == r)
            assert store.get(f"{name}-{r}").messages == [{"role": "user", "content": f"{name} write {last}"}]
    shared = [m["content"] for m in store.get("shared").messages]
    assert len(shared) == 2 * n  # no lost update
    for name in ("p1", "p2"):
        assert [c for c in shared if c.startswith(name + "-")] == [f"{name}-{k}" for k in range(n)]


# --- open_session_store -----------------------------------------------------------------------


def test_open_session_store(tmp_path):
    mem = open_session_store(None)
    assert isinstance(mem, MemorySessionStore) and mem.max_sessions == 128 and mem.idle_ttl_s == 1800
    d1 = open_session_store(str(tmp_path / "a"))
    d2 = open_session_store(tmp_path / "b")
    assert isinstance(d1, DirectorySessionStore) and isinstance(d2, DirectorySessionStore)
    assert d2.path == str(tmp_path / "b")
    assert open_session_store(mem) is mem
    for bad in (3, b"bytes", ["x"]):
        with pytest.raises(TypeError, match="session_store"):
            open_session_store(bad)  # type: ignore[arg-type]
    with d1:
        d1.put(sess("x", "y"))
    assert isinstance(d1, SessionStore)

