"""The output side of the code tools: capped streams, paths kept inside the work directory, snapshots."""

from __future__ import annotations

import os
import re

import pytest

from agentkit.plugins.code_exec.outputs import cap_text, changed_files, full_output_file, resolve_in, snapshot


def count_tokens(text: str) -> int:
    """About one token per 4 characters, at least one per word (a stand-in tokenizer with the same shape)."""
    return max(len(text.split()), (len(text) + 3) // 4)


def test_short_text_is_returned_whole():
    capped = cap_text("hello world", 100, count_tokens)
    assert capped.text == "hello world" and not capped.truncated and capped.total_chars == 11


def test_a_5mb_print_keeps_head_and_tail_within_the_budget_and_counts_what_it_left_out():
    text = "START " + "".join(f"line {i}\n" for i in range(600_000)) + " END"
    assert len(text) > 5_000_000
    capped = cap_text(text, 500, count_tokens, where=".outputs/stdout-1.txt")
    assert capped.truncated and count_tokens(capped.text) <= 500
    assert capped.text.startswith("START line 0\n") and capped.text.endswith(" END")
    m = re.search(r"\[\.\.\. (\d+) characters truncated; the full text is in \.outputs/stdout-1\.txt \.\.\.\]",
                  capped.text)
    assert m is not None
    head, tail = capped.text.split(m.group(0))
    assert len(head.rstrip("\n")) + int(m.group(1)) + len(tail.lstrip("\n")) == len(text)


def test_max_chars_caps_even_a_text_that_fits_the_token_budget():
    capped = cap_text("x" * 1000, 10_000, count_tokens, max_chars=100)
    assert capped.truncated and capped.text.count("x") <= 100


def test_full_output_file_is_hidden_and_holds_the_whole_text(tmp_path):
    rel = full_output_file(tmp_path, "stdout", "a" * 10_000)
    assert rel.startswith(".outputs/") and (tmp_path / rel).read_text() == "a" * 10_000


def test_resolve_in_refuses_paths_that_leave_the_work_directory(tmp_path):
    (tmp_path / "ok.txt").write_text("x")
    os.symlink("/etc/passwd", tmp_path / "link")
    assert resolve_in(tmp_path, "ok.txt") == (tmp_path / "ok.txt").resolve()
    for bad in ("../x", "/etc/passwd", "link", "sub/../../x", ""):
        with pytest.raises(ValueError):
            resolve_in(tmp_path, bad)


def test_snapshot_sees_new_and_modified_non_hidden_files_only(tmp_path):
    (tmp_path / "old.txt").write_text("1")
    (tmp_path / "same.txt").write_text("s")
    (tmp_path / "skills" / "s").mkdir(parents=True)
    before = snapshot(tmp_path, skip=("skills",))
    (tmp_path / "old.txt").write_text("22")
    (tmp_path / "new.csv").write_text("a,b")
    (tmp_path / ".hidden").write_text("h")
    (tmp_path / ".outputs").mkdir()
    (tmp_path / ".outputs" / "stdout.txt").write_text("o")
    (tmp_path / "skills" / "s" / "x.txt").write_text("k")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.txt").write_text("d")
    os.symlink("/etc/passwd", tmp_path / "passwd")
    changed, left_out = changed_files(before, snapshot(tmp_path, skip=("skills",)))
    assert sorted(changed) == ["new.csv", "old.txt", "sub/deep.txt"] and left_out == 0


def test_changed_files_stops_at_its_limit_and_says_how_many_it_left_out(tmp_path):
    before = snapshot(tmp_path)
    for i in range(40):
        (tmp_path / f"f{i}.txt").write_text("x")
    changed, left_out = changed_files(before, snapshot(tmp_path), limit=32)
    assert len(changed) == 32 and left_out == 8
