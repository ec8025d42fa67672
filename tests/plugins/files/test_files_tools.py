"""`mistralrs_read_file` and `mistralrs_list_files` on a real ToolContext and FileStore."""

from __future__ import annotations

import json

import pytest

from agentkit.agent.context import ToolContext
from agentkit.api.files import InputFile
from agentkit.api.requests import ChatCompletionRequest
from agentkit.file_store import FileStore
from agentkit.plugins.files import FilesPlugin
from agentkit.plugins.files.plugin import MAX_SLICE_BYTES
from agentkit.sessions import Session


def count_tokens(text: str) -> int:
    return max(len(text.split()), (len(text) + 3) // 4)


def turn(store, session_id="s1", output_tokens=100_000, **req):
    request = ChatCompletionRequest(model="x", messages=[{"role": "user", "content": "hi"}], **req)
    ctx = ToolContext(request=request, session=Session.new(session_id), config=None, files=store, turn=1,
                      max_seq_len=400_000, count_tokens=count_tokens, output_tokens=output_tokens)
    ctx.store_uploads(list(request.input_files or []))
    return ctx, {t.name: t for t in FilesPlugin().agent_request_tools(ctx) or []}


def read(tools, **args):
    return json.loads(tools["mistralrs_read_file"].fn("mistralrs_read_file", args).content)


def test_offered_only_when_the_turn_or_its_session_has_files():
    store = FileStore()
    assert turn(store)[1] == {}
    ctx, tools = turn(store, input_files=[InputFile.from_text("a.txt", "hello")])
    assert sorted(tools) == ["mistralrs_list_files", "mistralrs_read_file"]
    # the next turn of that session has no upload, but the session has the file
    assert sorted(turn(store)[1]) == ["mistralrs_list_files", "mistralrs_read_file"]
    assert turn(store, session_id="other")[1] == {}


def test_list_shows_uploads_and_produced_files_of_this_session_only():
    store = FileStore()
    ctx, tools = turn(store, input_files=[InputFile.from_text("a.txt", "hello")])
    ctx.add_file("plot.png", b"\x89PNG\r\n\x1a\n", "mistralrs_execute_python")
    turn(store, session_id="other", input_files=[InputFile.from_text("secret.txt", "no")])
    listed = json.loads(tools["mistralrs_list_files"].fn("mistralrs_list_files", {}).content)["files"]
    assert [(f["name"], f["text"]) for f in listed] == [("a.txt", True), ("plot.png", False)]
    assert listed[1]["source"] == {"tool": "mistralrs_execute_python", "round": 0, "turn": 1}


def test_read_pages_through_a_large_text_in_64_kib_slices_without_splitting_characters():
    text = "".join(f"line {i} é€😀\n" for i in range(20_000))  # multi-byte characters everywhere
    data = text.encode("utf-8")
    assert len(data) > 3 * MAX_SLICE_BYTES
    store = FileStore()
    ctx, tools = turn(store, input_files=[InputFile.from_text("big.txt", text)])
    file_id = ctx.input_files[0].id
    parts, lengths, offset = [], [], 0
    while True:
        out = read(tools, file_id=file_id, offset=offset)
        assert out["length"] <= MAX_SLICE_BYTES and "\ufffd" not in out["content"]
        parts.append(out["content"])
        lengths.append(out["length"])
        if out["eof"]:
            break
        offset = out["next_offset"]
    assert "".join(parts) == text
    assert all(MAX_SLICE_BYTES - 4 < n for n in lengths[:-1])  # full slices, less at most a split character


def test_read_by_name_with_length_and_a_small_budget():
    store = FileStore()
    _, tools = turn(store, output_tokens=100, input_files=[InputFile.from_text("n.txt", "0123456789" * 1000)])
    out = read(tools, name="n.txt", offset=5, length=20)
    assert out["content"] == "56789012345678901234" and out["next_offset"] == 25
    out = read(tools, name="n.txt")  # no length: as much as the budget allows
    assert count_tokens(out["content"]) <= 100 and out["next_offset"] == out["length"]


def test_errors_name_what_is_wrong():
    store = FileStore()
    ctx, tools = turn(store, input_files=[InputFile.from_text("a.txt", "hello"), InputFile("b.bin", b"\x00\x01")])
    turn(store, session_id="other", input_files=[InputFile.from_text("secret.txt", "no")])
    other_id = store.for_session("other")[0].id
    with pytest.raises(ValueError, match="no file .* in this session; the files are: a.txt"):
        read(tools, file_id=other_id)
    with pytest.raises(ValueError, match="give `file_id` or `name`"):
        read(tools)
    with pytest.raises(ValueError, match="past the end"):
        read(tools, name="a.txt", offset=99)
    with pytest.raises(ValueError, match="non-negative integer"):
        read(tools, name="a.txt", length=-1)
    out = read(tools, name="b.bin")
    assert out["status"] == "error" and "binary" in out["error"]
    ctx.add_error_file("missing.csv", "mistralrs_execute_python", "not_found", "never written")
    assert read(tools, name="missing.csv")["error"] == "never written"
