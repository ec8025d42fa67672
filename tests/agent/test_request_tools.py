"""The request-tools seam (agent_request_tools, ToolContext, FileStore, Runner.find_file), tried
through a Runner on the tiny Llama with a real plugin: tools offered per request, files produced
and found, the system note, the approval fallback, and a broken plugin that does not fail the turn."""

from __future__ import annotations

import json

import pytest

from agentkit import ChatCompletionRequest, InputFile, Runner, Which
from agentkit.agent.context import RESPONSE_BODY_MAX, ToolContext
from agentkit.api.enums import AgentPermission
from agentkit.api.files import File
from agentkit.file_store import FileStore
from agentkit.hookspecs import hookimpl
from agentkit.sessions import Session
from agentkit.tools import Tool, ToolResult

STRICT = {"type": "object", "properties": {"text": {"type": "string", "maxLength": 8}}, "required": ["text"],
          "additionalProperties": False}


class FilePlugin:
    """Offers `make_file` only when the request enables the shell; the tool writes a file."""

    def __init__(self, note: str | None = None, permission: AgentPermission | None = None, approve=None) -> None:
        self.contexts: list[ToolContext] = []
        self.note, self.permission, self.approve = note, permission, approve

    @hookimpl
    def agent_request_tools(self, context):
        self.contexts.append(context)
        if self.note:
            context.notes.append(self.note)
        if not context.request.enable_shell:
            return None

        def make(name, args):
            f = context.add_file("out.txt", f"made: {args['text']}", tool=name)
            png = context.add_file("fig.png", b"\x89PNG\r\n\x1a\n" + bytes(range(64)), tool=name)
            return ToolResult(content=f"wrote {f.id}", file_ids=[f.id, png.id])

        return [Tool(name="make_file", description="Write a file.", parameters=STRICT, fn=make, strict=True,
                     permission=self.permission, approve=self.approve)]


class BrokenPlugin:
    @hookimpl
    def agent_request_tools(self, context):
        raise RuntimeError("backend down")


def _ask(r: Runner, **kw):
    return r.send_chat_completion_request(ChatCompletionRequest(
        model="x", messages="Make a file.", tool_choice="required", max_tokens=64, max_tool_rounds=1, **kw))


def test_request_tools_are_offered_per_request_and_their_files_are_listed_and_found(tiny_llama):
    plugin = FilePlugin()
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[plugin]) as r:
        resp = _ask(r, enable_shell=True)
        assert [c.name for c in resp.agentic_tool_calls] == ["make_file"]
        files = resp.files
        assert [f.name for f in files] == ["out.txt", "fig.png"]
        text, png = files
        assert text.text.startswith("made: ") and text.source.tool == "make_file"
        assert (text.source.round, text.source.turn) == (0, 1)
        assert text.id.startswith("file_") and text.id.endswith("_r0_0") and png.id.endswith("_r0_1")
        assert png.is_binary() and png.content().startswith(b"\x89PNG")
        assert r.find_file(png.id).content() == png.content()
        assert resp.agentic_tool_calls[0].file_ids == [text.id, png.id]
        stored = json.loads(r.export_session(resp.session_id))["files"]
        assert [f["id"] for f in stored] == [text.id, png.id]
        # a request that does not enable the shell is not offered the tool, and makes no files
        plain = r.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages="Hello", max_tokens=4, max_tool_rounds=1))
        assert plain.files is None and plain.agentic_tool_calls == []
        assert plugin.contexts[-1].request.enable_shell is False


def test_find_file_reads_files_of_sessions_saved_by_another_runner(tiny_llama, tmp_path):
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[FilePlugin()], session_store=tmp_path) as r:
        made = _ask(r, enable_shell=True).files[0]
    with Runner(Which.Plain(tiny_llama), progress=False, session_store=tmp_path) as r2:
        found = r2.find_file(made.id)
        assert found is not None and found.text == made.text
        assert r2.find_file("file_nope") is None
        with pytest.raises(TypeError, match="file_id must be a str"):
            r2.find_file(3)


def test_input_files_are_stored_previewed_and_notes_reach_the_model(tiny_llama, monkeypatch):
    monkeypatch.setenv("AGENTKIT_DISABLE_PLUGINS", "files")  # its file tools would not fit the tiny context
    plugin = FilePlugin(note="NOTE-FROM-PLUGIN")
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[plugin]) as r:
        upload = InputFile.from_text("data.csv", "a,b\n1,2\n")
        resp = r.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            max_tokens=4, input_files=[upload]))
        context = plugin.contexts[-1]
        assert [f.id for f in context.input_files] == [upload.id]
        assert r.find_file(upload.id).text == "a,b\n1,2\n"
        shown = context.prompt_messages([{"role": "system", "content": "Be brief."}])
        assert len(shown) == 1 and shown[0]["content"].startswith("NOTE-FROM-PLUGIN")
        assert "data.csv" in shown[0]["content"] and "a,b\n1,2" in shown[0]["content"]
        assert shown[0]["content"].endswith("Be brief.")
        assert context.prompt_tokens > 0 and context.remaining_tokens() == context.max_seq_len - context.prompt_tokens
        stored = json.loads(r.export_session(resp.session_id))
        assert stored["messages"][0] == {"role": "system", "content": "Be brief."}  # the note is not stored
        assert [f["id"] for f in stored["files"]] == [upload.id]


@pytest.mark.parametrize("decision, ran", [(True, True), (False, False)])
def test_tool_approve_decides_ask_calls_without_a_request_callback(tiny_llama, decision, ran):
    seen = []
    plugin = FilePlugin(permission=AgentPermission.Ask, approve=lambda a: seen.append(a) or decision)
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[plugin]) as r:
        resp = _ask(r, enable_shell=True)
        assert len(seen) == 1 and seen[0].tool.label == "make_file"
        assert (resp.files is not None) is ran
        assert ("denied" in resp.agentic_tool_calls[0].result_content) is not ran


def test_a_broken_plugin_is_named_to_the_model_and_the_turn_runs(tiny_llama):
    plugin = FilePlugin()
    with Runner(Which.Plain(tiny_llama), progress=False, plugins=[plugin, BrokenPlugin()]) as r:
        resp = _ask(r, enable_shell=True)
        assert [c.name for c in resp.agentic_tool_calls] == ["make_file"]
        assert any("unavailable this turn" in n and "backend down" in n for n in plugin.contexts[-1].notes)


def test_file_store_evicts_oldest_past_its_byte_cap_and_forgets_deleted_sessions():
    store = FileStore(max_bytes=100)
    a = store.put(File(id="a", name="a.txt", text="x" * 60, bytes=60), "s1")
    store.put(File(id="b", name="b.txt", text="y" * 60, bytes=60), "s2")
    assert store.get("a") is None and store.get("b") is not None and a.id == "a"
    assert store.discard_session("s2") == 1 and len(store) == 0
    with pytest.raises(ValueError, match="max_bytes"):
        FileStore(0)


def test_response_elides_bodies_above_8_mib_but_the_store_keeps_them():
    ctx = ToolContext(request=ChatCompletionRequest(model="x", messages="hi"), session=Session.new(), config=None,
                      files=FileStore(), turn=1, max_seq_len=512, count_tokens=len, output_tokens=128)
    big = ctx.add_file("big.bin", b"\0" * (RESPONSE_BODY_MAX + 1), tool="t")
    small = ctx.add_file("small.txt", "hi", tool="t")
    listed = ctx.response_files()
    assert listed[0].is_truncated() and not listed[1].is_truncated()
    assert ctx.files.get(big.id).data_base64 is not None and small.text == "hi"
