"""DirectorySessionStore: newer-format files stay in place (D9), stale temp files are swept (D10)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from agentkit.errors import SessionError
from agentkit.session_directory import DirectorySessionStore
from agentkit.session_store import SessionCorruptError
from agentkit.sessions import Session, SessionVersionError

NEWER = b'{"version": 99, "id": "s1", "messages": [], "from_the_future": true}'
USER = {"role": "user", "content": "hi"}
ASSISTANT = {"role": "assistant", "content": "hello"}


def test_a_newer_format_file_raises_a_version_error_and_stays_in_place(tmp_path, caplog):
    store = DirectorySessionStore(tmp_path)
    store.put(Session("ok", [USER, ASSISTANT]))
    (tmp_path / "s1.json").write_bytes(NEWER)
    with pytest.raises(SessionVersionError) as info:
        store.get("s1")
    err = info.value
    assert isinstance(err, SessionError) and isinstance(err, ValueError)
    assert not isinstance(err, SessionCorruptError)
    assert (err.version, err.supported) == (99, 1)
    message = str(err)
    assert "'s1'" in message and str(tmp_path / "s1.json") in message and "left in place" in message
    assert "upgrade agentkit" in message
    assert (tmp_path / "s1.json").read_bytes() == NEWER
    assert not (tmp_path / "quarantine").exists()

    called = []
    with pytest.raises(SessionVersionError):
        store.update("s1", called.append)  # an older process never overwrites it
    assert called == [] and (tmp_path / "s1.json").read_bytes() == NEWER
    with caplog.at_level(logging.WARNING, logger="agentkit.session_store"):
        assert [s.id for s in store.sessions()] == ["ok"]  # listing and lookup skip it
    assert "s1" in caplog.text
    assert store.find_by_prefix([USER, ASSISTANT, USER]).id == "ok"
    assert sorted(store.ids()) == ["ok", "s1"] and (tmp_path / "s1.json").read_bytes() == NEWER
    assert store.delete("s1") is True  # deleting it on purpose still works


def _temp(root, session_id: str, rand: str, age_s: float) -> str:
    path = root / f".{session_id}.json.{rand}.tmp"
    path.write_bytes(b'{"partial')
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path.name


def test_stale_temp_files_are_swept_when_the_store_opens(tmp_path, caplog):
    old = _temp(tmp_path, "a", "k2j_9x0q", 3600)
    older = _temp(tmp_path, "b%2Fc", "abcdefgh", 301)
    fresh = _temp(tmp_path, "a", "zz11zz11", 5)  # a concurrent writer's, mid-write
    keep = ["x.json.abcdefgh.tmp", ".notes.tmp", ".a.json.ABCDEFGH.tmp", ".a.json.short.tmp", "s.json"]
    for name in keep:
        (tmp_path / name).write_text("{}")
        os.utime(tmp_path / name, (0, 0))
    (tmp_path / ".dir.json.abcdefgh.tmp").mkdir()
    os.utime(tmp_path / ".dir.json.abcdefgh.tmp", (0, 0))

    with caplog.at_level(logging.WARNING, logger="agentkit.session_store"):
        store = DirectorySessionStore(tmp_path)
    names = set(os.listdir(tmp_path))
    assert old not in names and older not in names
    assert fresh in names and set(keep) <= names and ".dir.json.abcdefgh.tmp" in names
    assert "2 stale temp file(s)" in caplog.text
    assert store.sweep_temp_files(0) == [str(tmp_path / fresh)]  # explicit, any age


def test_the_sweep_age_is_configurable_and_can_be_switched_off(tmp_path):
    name = _temp(tmp_path, "a", "abcdefgh", 60)
    DirectorySessionStore(tmp_path, stale_temp_s=None)
    DirectorySessionStore(tmp_path)  # default 300 s: a minute-old file may still be a live write
    assert name in os.listdir(tmp_path)
    DirectorySessionStore(tmp_path, stale_temp_s=30)
    assert name not in os.listdir(tmp_path)
    for bad in (-1, "300", True, float("nan")):
        with pytest.raises(ValueError, match="stale_temp_s"):
            DirectorySessionStore(tmp_path, stale_temp_s=bad)


WRITER = textwrap.dedent("""
    import os, sys, time
    from agentkit.session_directory import DirectorySessionStore
    from agentkit.sessions import Session
    store = DirectorySessionStore(sys.argv[1])
    def stuck(fd):  # the data is written, the rename has not happened: a kill -9 lands here
        print("mid-write", flush=True)
        time.sleep(120)
    os.fsync = stuck
    store.put(Session("k1", [{"role": "user", "content": "new " * 500_000}]))
""")


def test_a_writer_killed_mid_write_leaves_a_temp_file_that_a_later_open_sweeps(tmp_path):
    store = DirectorySessionStore(tmp_path)
    store.put(Session("k1", [USER]))
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "mid-write", child.stderr.read()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    temps = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(temps) == 1 and temps[0].startswith(".k1.json.")
    assert os.path.getsize(tmp_path / temps[0]) > 2_000_000  # the real leftover of the real writer
    assert DirectorySessionStore(tmp_path).get("k1").messages == [USER]  # the old version survived
    assert temps[0] in os.listdir(tmp_path)  # just written: could be a live writer, left alone
    t = time.time() - 600
    os.utime(tmp_path / temps[0], (t, t))
    DirectorySessionStore(tmp_path)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []
    assert json.loads((tmp_path / "k1.json").read_text())["messages"] == [USER]


def _parses(monkeypatch):
    calls = []
    real = Session.from_json.__func__

    def counting(cls, obj, session_id=None):
        calls.append(session_id)
        return real(cls, obj, session_id)

    monkeypatch.setattr(Session, "from_json", classmethod(counting))
    return calls


def _set_mtime(root, session_id, t):
    os.utime(root / f"{session_id}.json", (t, t))


def test_find_by_prefix_parses_each_file_once_per_version(tmp_path, monkeypatch):
    store = DirectorySessionStore(tmp_path)
    other = {"role": "user", "content": "other"}
    for k in range(20):
        store.put(Session(f"s{k}", [{"role": "user", "content": f"q{k}"}, ASSISTANT]))
    store.put(Session("short", [USER, ASSISTANT]))
    store.put(Session("long", [USER, ASSISTANT, other, ASSISTANT]))
    for k, sid in enumerate(["short", "long"]):
        _set_mtime(tmp_path, sid, time.time() + 10 + k)  # "long" is the most recently written
    calls = _parses(monkeypatch)
    assert store.find_by_prefix([USER, ASSISTANT, other, ASSISTANT, USER]).id == "long"
    assert calls == ["long"]  # most recent first, stops at the first match
    assert store.find_by_prefix([other, ASSISTANT]) is None
    assert len(calls) == 1 + 21  # the rest indexed once
    calls.clear()
    assert store.find_by_prefix([USER, ASSISTANT, USER]).id == "short"
    assert store.find_by_prefix([USER, ASSISTANT, other, ASSISTANT, USER]).id == "long"
    assert store.find_by_prefix([other, ASSISTANT]) is None and store.find_by_prefix([USER]) is None
    assert store.find_by_prefix([{"role": "user", "content": "q7"}, ASSISTANT, USER]).id == "s7"
    assert calls == ["short", "long", "s7"]  # only the verified candidates were read

    # another process rewrites "long" (new inode): re-indexed, and it no longer matches
    DirectorySessionStore(tmp_path, stale_temp_s=None).put(Session("long", [other, ASSISTANT]))
    calls.clear()
    assert store.find_by_prefix([other, ASSISTANT, USER]).id == "long"
    assert calls == ["long"]  # its new version parsed once (index and verification)
    assert store.find_by_prefix([USER, ASSISTANT, other, ASSISTANT, USER]).id == "short"
    os.unlink(tmp_path / "short.json")
    assert store.find_by_prefix([USER, ASSISTANT, USER]) is None


def test_find_by_prefix_skips_corrupt_and_newer_files(tmp_path, caplog):
    store = DirectorySessionStore(tmp_path)
    store.put(Session("ok", [USER, ASSISTANT]))
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "new.json").write_bytes(NEWER)
    with caplog.at_level(logging.WARNING, logger="agentkit.session_store"):
        assert store.find_by_prefix([USER, ASSISTANT, USER]).id == "ok"
    assert "'bad'" in caplog.text and "'new'" in caplog.text
    assert (tmp_path / "new.json").read_bytes() == NEWER and list((tmp_path / "quarantine").iterdir())


def test_find_by_prefix_verifies_a_digest_match(tmp_path, monkeypatch):
    import agentkit.session_directory as sd

    store = DirectorySessionStore(tmp_path)
    store.put(Session("a", [{"role": "user", "content": "other"}, ASSISTANT]))
    _set_mtime(tmp_path, "a", time.time() + 10)
    store.put(Session("b", [USER, ASSISTANT]))
    monkeypatch.setattr(sd, "history_digests", lambda messages: ["collision"])  # every digest equal
    assert store.find_by_prefix([USER, ASSISTANT, USER]).id == "b"
    assert store.find_by_prefix([ASSISTANT, USER]) is None
