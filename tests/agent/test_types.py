"""Tests of the public value types: enums, Which, requests, responses, agent/file/model types, errors.

Reference: runner-api.md §1.4–§1.8 (wheel 0.9.5 orders, defaults and error messages). Fast, offline,
no torch.
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import subprocess
import sys

import pytest

from agentkit.api.agent_options import (
    AgentToolApproval,
    AgentToolApprovalDecision,
    AgentToolMetadata,
    ApproximateUserLocation,
    CodeExecutionConfig,
    McpClientConfigPy,
    McpServerConfigPy,
    McpServerSourcePy,
    SandboxPolicy,
    ShellConfig,
    ShellSkillMount,
    WebSearchOptions,
    WebSearchUserLocation,
)
from agentkit.api.enums import (
    AgentPermission,
    AgentToolApprovalDecisionKind,
    AgentToolKind,
    AgentToolSource,
    Architecture,
    CodeExecutionPermission,
    DiffusionArchitecture,
    EmbeddingArchitecture,
    IsqOrganization,
    ModelDType,
    MultimodalArchitecture,
    NetworkMode,
    SearchContextSize,
    SpeechLoaderType,
    ToolCallType,
    ToolChoice,
    coerce_permission,
)
from agentkit.api.files import File, FileSource, InputFile, RequestedFile
from agentkit.api.model_options import AnyMoeConfig, AnyMoeExpertType, LoraAdapterGeneration, LoraAdapterInfo
from agentkit.api.requests import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from agentkit.api.responses import (
    CalledFunction,
    ChatCompletionChunkResponse,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    ToolCallResponse,
    Usage,
)
from agentkit.api.which import LoraAdapter, Which
from agentkit.errors import AgentkitError, ConfigError, LoraAdapterError, RequestError

GEN = "0123456789abcdef" * 4

# ---- enums -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "value"),
    [
        (Architecture.Mistral, 0), (Architecture.Phi3_5MoE, 9), (Architecture.GLM4MoeLite, 14),
        (Architecture.GLM4Moe, 15), (Architecture.HunYuanDenseV1, 20), (Architecture.Lfm2Moe, 24),
        (MultimodalArchitecture.Phi3V, 0), (MultimodalArchitecture.Lfm2Vl, 4), (MultimodalArchitecture.Qwen4Exp, 19),
        (MultimodalArchitecture.DiffusionGemma, 23), (EmbeddingArchitecture.Qwen3Embedding, 1),
        (DiffusionArchitecture.FluxOffloaded, 1), (SpeechLoaderType.Dia, 0), (ModelDType.F32, 3),
        (IsqOrganization.MoQE, 1), (ToolChoice.NoTools, 0), (ToolChoice.Auto, 1), (SearchContextSize.High, 2),
        (NetworkMode.NoNetwork, 0), (AgentPermission.Deny, 2), (AgentToolSource.External, 3),
        (AgentToolKind.Custom, 4), (AgentToolApprovalDecisionKind.Deny, 1), (ToolCallType.Function, 0),
    ],
)
def test_enum_values_are_declaration_indices(member, value):
    assert int(member) == value and member == value


def test_enum_sizes_repr_and_last_members():
    assert len(Architecture) == 25 and list(Architecture)[-1] is Architecture.Lfm2Moe
    assert len(MultimodalArchitecture) == 24 and list(MultimodalArchitecture)[-1] is MultimodalArchitecture.DiffusionGemma
    assert [m.name for m in AgentToolKind] == ["CodeExecution", "WebSearch", "Shell", "File", "Custom", "External"]
    assert repr(ToolChoice.Auto) == "ToolChoice.Auto" and str(NetworkMode.Full) == "NetworkMode.Full"
    assert not hasattr(Architecture, "Gpt2")


def test_coerce_permission():
    assert coerce_permission(" Ask ", AgentPermission) is AgentPermission.Ask
    assert coerce_permission("DENY", CodeExecutionPermission) is CodeExecutionPermission.Deny
    assert coerce_permission(CodeExecutionPermission.Auto, AgentPermission) is AgentPermission.Auto
    assert coerce_permission("none", NetworkMode) is NetworkMode.NoNetwork
    with pytest.raises(ValueError, match="invalid agent permission `sometimes`"):
        coerce_permission("sometimes", AgentPermission)
    with pytest.raises(TypeError):
        coerce_permission(1, AgentPermission)
    with pytest.raises(TypeError):
        coerce_permission(NetworkMode.Full, AgentPermission)


# ---- Which -----------------------------------------------------------------------------------


def test_which_plain_positional_order_and_kind():
    w = Which.Plain("m", Architecture.Llama, "tok.json", "topo.yml", IsqOrganization.MoQE, "out.uqff", None,
                    ModelDType.BF16)
    assert (w.arch, w.tokenizer_json, w.topology, w.organization, w.write_uqff, w.dtype) == (
        Architecture.Llama, "tok.json", "topo.yml", IsqOrganization.MoQE, "out.uqff", ModelDType.BF16)
    assert isinstance(w, Which) and w.kind == "Plain" and type(w).__name__ == "Which_Plain"
    assert w.dtype is ModelDType.Auto or w.dtype is ModelDType.BF16
    assert pickle.loads(pickle.dumps(w)) == w
    with pytest.raises(AttributeError):
        w.model_id = "other"


def test_which_gguf_signature_kw_only_and_defaults():
    params = inspect.signature(Which.GGUF).parameters
    positional = [n for n, p in params.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == ["quantized_model_id", "quantized_filename", "tok_model_id", "topology", "dtype"]
    assert params["tokenizer_json"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(params)[-1] == "encoder_cache_memory_bytes"
    g = Which.GGUF("repo", ["a.gguf", "b.gguf"], adapters=[LoraAdapter("x", "src")])
    assert (g.max_adapters, g.max_rank, g.max_bytes, g.dtype) == (16, 256, 8589934592, ModelDType.Auto)
    assert g.quantized_filename == ["a.gguf", "b.gguf"] and g.kind == "GGUF"
    with pytest.raises(TypeError):
        Which.GGUF("repo", "f.gguf", None, None, ModelDType.Auto, "tokenizer.json")


@pytest.mark.parametrize(
    ("variant", "required"),
    [
        (Which.Embedding, ["model_id"]), (Which.XLora, ["xlora_model_id", "order"]), (Which.Lora, ["model_id"]),
        (Which.XLoraGGUF, ["quantized_model_id", "quantized_filename", "xlora_model_id", "order"]),
        (Which.LoraGGML, ["quantized_model_id", "quantized_filename", "adapters_model_id", "order"]),
        (Which.GGML, ["quantized_model_id", "quantized_filename", "tok_model_id"]),
        (Which.MultimodalPlain, ["model_id"]), (Which.DiffusionPlain, ["model_id", "arch"]),
        (Which.Speech, ["model_id", "arch"]),
    ],
)
def test_which_required_parameters(variant, required):
    params = inspect.signature(variant).parameters.values()
    assert [p.name for p in params if p.default is inspect.Parameter.empty] == required


def test_which_type_errors_name_the_field():
    with pytest.raises(TypeError, match="model_id"):
        Which.Plain(123)
    with pytest.raises(TypeError, match="dtype"):
        Which.Plain("m", dtype="bf16")
    with pytest.raises(TypeError, match="arch"):
        Which.MultimodalPlain("m", Architecture.Llama)
    with pytest.raises(TypeError, match="arch"):
        Which.DiffusionPlain("m", None)
    with pytest.raises(TypeError, match="quantized_filename"):
        Which.GGML("repo", ["a.bin"], "tok")
    with pytest.raises(TypeError, match="adapters"):
        Which.Lora("m", adapters=["not-an-adapter"])
    with pytest.raises(TypeError):
        Which.Plain("m", auto_map_params=None)  # removed in 0.9.5


def test_which_accepts_pathlike_and_organization_string(tmp_path):
    w = Which.Plain(tmp_path, organization="moqe")
    assert w.model_id == str(tmp_path) and w.organization is IsqOrganization.MoQE
    assert Which.Speech("dia", SpeechLoaderType.Dia).dac_model_id is None
    assert LoraAdapter("a", "repo/x").revision is None


# ---- requests --------------------------------------------------------------------------------


def test_chat_request_wheel_signature():
    params = list(inspect.signature(ChatCompletionRequest).parameters.values())
    names = [p.name for p in params]
    assert names[:6] == ["messages", "model", "logprobs", "n_choices", "logit_bias", "top_logprobs"]
    # wheel ends with `ignore_eos, *, adapter`; agentkit adds keyword-only `seed`, `timeout_secs` after it
    assert names[-4:] == ["ignore_eos", "adapter", "seed", "timeout_secs"]
    assert [p.kind for p in params[-4:]] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] + [inspect.Parameter.KEYWORD_ONLY] * 3
    assert names.index("reasoning_effort") == names.index("truncate_sequence") + 1
    comp = [p.name for p in inspect.signature(CompletionRequest).parameters.values()]
    assert comp[:4] == ["prompt", "model", "best_of", "echo_prompt"]
    assert comp[-4:] == ["ignore_eos", "adapter", "seed", "timeout_secs"]
    wheel = ("messages model logprobs n_choices logit_bias top_logprobs max_tokens presence_penalty "
             "frequency_penalty repetition_penalty stop_seqs temperature top_p top_k stream grammar grammar_type "
             "min_p tool_schemas tool_choice dry_multiplier dry_base dry_allowed_length dry_sequence_breakers "
             "web_search_options enable_thinking truncate_sequence reasoning_effort max_tool_rounds "
             "tool_dispatch_url enable_code_execution enable_shell shell_skills agent_permission "
             "agent_approval_callback code_execution_permission session_id files input_files ignore_eos").split()
    assert names[:-3] == wheel


def test_chat_messages_container_and_content_errors():
    with pytest.raises(TypeError, match=r"^Expected a string or list of dicts\.$"):
        ChatCompletionRequest(({"role": "user", "content": "hi"},), "m")
    with pytest.raises(TypeError, match="content"):
        ChatCompletionRequest([{"role": "user", "content": None}], "m")
    with pytest.raises(ValueError, match="role"):
        ChatCompletionRequest([{"content": "hi"}], "m")
    with pytest.raises(ValueError, match="only 'user'"):
        ChatCompletionRequest([{"role": "system", "content": [{"type": "text", "text": "a"},
                                                               {"type": "text", "text": "b"}]}], "m")
    with pytest.raises(ValueError, match="text part"):
        ChatCompletionRequest([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "m")


def test_normalized_messages_keeps_tool_keys_and_joins_parts():
    req = ChatCompletionRequest([
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call-1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]},
        {"role": "tool", "content": "42", "tool_call_id": "call-1", "name": "f"},
        {"role": "user", "content": [{"type": "text", "text": "only"}]},
    ], "default")
    msgs = req.normalized_messages()
    assert msgs[0] == {"role": "user", "content": "a b"}
    assert msgs[1]["content"] == "" and msgs[1]["tool_calls"][0]["function"]["arguments"] == {"x": 1}
    assert msgs[2] == {"role": "tool", "content": "42", "tool_call_id": "call-1", "name": "f"}
    assert msgs[3] == {"role": "user", "content": "only"}
    assert ChatCompletionRequest("hello", "m").normalized_messages() == [{"role": "user", "content": "hello"}]


def test_media_parts_validated_but_rejected_at_normalization():
    req = ChatCompletionRequest([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}, {"type": "text", "text": "what?"}]}], "m")
    with pytest.raises(ValueError, match="multimodal input is not supported by this model yet"):
        req.normalized_messages()
    assert req.normalized_messages(allow_media=True)[0]["media"] == [{"type": "image", "url": "http://x/y.png"}]


def test_reasoning_effort_rules():
    assert ChatCompletionRequest("q", "m", reasoning_effort=" HIGH ").reasoning_effort == "high"
    assert ChatCompletionRequest("q", "m", reasoning_effort="none").thinking_controls() == (False, "off")
    assert ChatCompletionRequest("q", "m", reasoning_effort="max").reasoning_effort == "xhigh"
    assert ChatCompletionRequest("q", "m").thinking_controls() == (True, None)
    assert ChatCompletionRequest("q", "m", enable_thinking=True, reasoning_effort="low").thinking_controls() == (True, "low")
    with pytest.raises(ValueError, match=r"reasoning effort `high` conflicts with enable_thinking=false"):
        ChatCompletionRequest("q", "m", enable_thinking=False, reasoning_effort="high")
    with pytest.raises(ValueError, match=r"reasoning effort `off` conflicts with enable_thinking=true"):
        ChatCompletionRequest("q", "m", enable_thinking=True, reasoning_effort="off")
    with pytest.raises(ValueError, match="invalid reasoning effort `huge`"):
        ChatCompletionRequest("q", "m", reasoning_effort="huge")


def test_grammar_checked_only_by_validate_grammar():
    req = ChatCompletionRequest("q", "m", grammar="[a-z]+")  # construction succeeds, as in the wheel
    with pytest.raises(ValueError, match="^Grammar text is specified but not grammar type$"):
        req.validate_grammar()
    with pytest.raises(ValueError, match="^Grammar type is specified but not grammar text$"):
        CompletionRequest("p", "m", grammar_type="regex").validate_grammar()
    with pytest.raises(ValueError, match="nor `llguidance`"):
        ChatCompletionRequest("q", "m", grammar="x", grammar_type="gbnf").validate_grammar()
    with pytest.raises(ValueError, match="Failed to parse JSON schema"):
        ChatCompletionRequest("q", "m", grammar="{", grammar_type="json_schema").validate_grammar()
    assert ChatCompletionRequest("q", "m").validate_grammar() is None
    assert ChatCompletionRequest("q", "m", grammar='{"type": "object"}', grammar_type="json_schema"
                                 ).validate_grammar() == ("json_schema", {"type": "object"})


def test_numeric_and_type_validation():
    cases = [
        (ValueError, "n_choices", {"n_choices": 0}), (ValueError, "max_tokens", {"max_tokens": 0}),
        (ValueError, "top_logprobs", {"top_logprobs": 21}), (TypeError, "logit_bias", {"logit_bias": {"x": 1.0}}),
        (TypeError, "logit_bias", {"logit_bias": {1: "big"}}), (TypeError, "temperature", {"temperature": "hot"}),
        (TypeError, "adapter", {"adapter": 7}), (TypeError, "stream", {"stream": "yes"}),
        (TypeError, "tool_schemas", {"tool_schemas": [3]}), (ValueError, "tool_choice", {"tool_choice": "any"}),
    ]
    for exc, field_name, kwargs in cases:
        with pytest.raises(exc, match=field_name):
            ChatCompletionRequest("q", "m", **kwargs)
    req = ChatCompletionRequest("q", "m", logit_bias={"5": 1}, temperature=1, stop_seqs="END",
                                adapter=LoraAdapterGeneration(GEN))
    assert req.logit_bias == {5: 1.0} and req.temperature == 1.0 and req.stop_seqs == ["END"]


def test_tool_schemas_and_tool_choice():
    fn = {"name": "add", "parameters": {"type": "object"}}
    req = ChatCompletionRequest("q", "m", tool_schemas=[json.dumps({"type": "function", "function": fn}), fn],
                                tool_choice={"type": "function", "function": {"name": "add"}})
    with pytest.raises(ValueError, match="duplicate tool name"):
        req.parsed_tools()
    tools = ChatCompletionRequest("q", "m", tool_schemas=[fn]).parsed_tools()
    assert tools == [{"type": "function", "function": fn}]
    with pytest.raises(ValueError, match=r"tool_schemas\[0\].*name"):
        ChatCompletionRequest("q", "m", tool_schemas=['{"type": "function", "function": {}}']).parsed_tools()
    assert req.normalized_tool_choice() == {"type": "function", "function": {"name": "add"}}
    assert ChatCompletionRequest("q", "m", tool_choice="NONE").tool_choice is ToolChoice.NoTools
    assert ChatCompletionRequest("q", "m").normalized_tool_choice() == "auto"
    assert ChatCompletionRequest("q", "m", tool_choice="required").normalized_tool_choice() == "required"


def test_agent_fields_coerced():
    skill = ShellSkillMount("demo", "A demo skill", "/tmp")
    req = ChatCompletionRequest("q", "m", agent_permission="ask", code_execution_permission="DENY",
                                shell_skills=[skill], files=[RequestedFile("out.csv")])
    assert req.agent_permission is AgentPermission.Ask
    assert req.code_execution_permission is CodeExecutionPermission.Deny
    assert req.enable_shell is True  # forced by non-empty shell_skills
    assert ChatCompletionRequest("q", "m", code_execution_permission="deny").effective_permission() is AgentPermission.Deny
    with pytest.raises(ValueError, match="invalid agent permission"):
        ChatCompletionRequest("q", "m", agent_permission="maybe")
    with pytest.raises(TypeError, match="input_files"):
        ChatCompletionRequest("q", "m", input_files=["a.txt"])


def test_embedding_request_validation():
    assert EmbeddingRequest("hi").inputs() == ["hi"]
    assert EmbeddingRequest(["a", "b"]).inputs() == ["a", "b"]
    assert EmbeddingRequest([1, 2, 3]).inputs() == [[1, 2, 3]]
    assert EmbeddingRequest([[1], [2, 3]], truncate_sequence=True).inputs() == [[1], [2, 3]]
    with pytest.raises(ValueError, match="^embedding input sequence must not be empty$"):
        EmbeddingRequest([])
    with pytest.raises(ValueError, match="^token list must contain at least one element$"):
        EmbeddingRequest([[]])
    with pytest.raises(ValueError, match="^token value -1 is outside the allowed unsigned 32-bit range$"):
        EmbeddingRequest([5, -1])
    with pytest.raises(TypeError):
        EmbeddingRequest(3.5)
    with pytest.raises(TypeError):
        EmbeddingRequest(["a", 1])


# ---- responses -------------------------------------------------------------------------------


def test_usage_from_counts_math():
    u = Usage.from_counts(100, 50, 0.5, 2.0, cached_tokens=64)
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (100, 50, 150)
    assert u.total_time_sec == pytest.approx(2.5)
    assert u.avg_tok_per_sec == pytest.approx(60.0)
    assert u.avg_prompt_tok_per_sec == pytest.approx(200.0)
    assert u.avg_compl_tok_per_sec == pytest.approx(25.0)
    assert u.prompt_tokens_details.cached_tokens == 64
    zero = Usage.from_counts(3, 0, 0.0, 0.0)
    assert (zero.avg_tok_per_sec, zero.avg_prompt_tok_per_sec, zero.avg_compl_tok_per_sec) == (0.0, 0.0, 0.0)
    assert zero.prompt_tokens_details is None
    both = u + Usage.from_counts(10, 10, 0.5, 0.0)
    assert (both.prompt_tokens, both.completion_tokens, both.total_time_sec) == (110, 60, pytest.approx(3.0))
    assert both.prompt_tokens_details.cached_tokens == 64


def test_response_defaults_and_to_dict():
    call = ToolCallResponse(index=0, id="call-1", function=CalledFunction(name="f", arguments='{"a": 1}'))
    assert call.tp is ToolCallType.Function and call.type == "function"
    resp = ChatCompletionResponse(
        id="7", created=1, model="m", usage=Usage.from_counts(1, 1, 1.0, 1.0),
        choices=[Choice(finish_reason="tool_calls", index=0,
                        message=ResponseMessage(content=None, tool_calls=[call]), stop_sequence=None)])
    assert (resp.system_fingerprint, resp.object, resp.session_id) == ("local", "chat.completion", None)
    d = json.loads(json.dumps(resp.to_dict()))
    assert d["choices"][0]["message"]["tool_calls"][0] == {
        "index": 0, "id": "call-1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    assert d["usage"]["total_tokens"] == 2 and "prompt_tokens_details" not in d["usage"]
    chunk = ChatCompletionChunkResponse(id="7", created=1, model="m", choices=[
        ChunkChoice(finish_reason=None, index=0, delta=Delta(content="hi"))])
    assert chunk.object == "chat.completion.chunk" and chunk.to_dict()["choices"][0]["delta"] == {
        "role": "assistant", "content": "hi"}
    with pytest.raises(AttributeError):
        resp.id = "8"


# ---- agent, file and model types -------------------------------------------------------------


def test_input_file_constructors(tmp_path):
    f = InputFile.from_text("data.csv", "a,b\n1,2\n")
    assert f.id.startswith("file-") and len(f.id) == 5 + 32 and f.bytes == 8 and f.mime_type == "text/plain"
    assert f.text() == "a,b\n1,2\n" and f.id != InputFile.from_text("data.csv", "x").id
    path = tmp_path / "pic.png"
    path.write_bytes(b"\x89PNG\r\n")
    p = InputFile.from_path(path)
    assert (p.name, p.mime_type, p.bytes, p.is_text()) == ("pic.png", "image/png", 6, False)
    assert InputFile.from_path(str(path), name="other.bin").name == "other.bin"
    assert InputFile("blob", b"\x00").mime_type == "application/octet-stream"
    with pytest.raises(TypeError, match="from_text"):
        InputFile("a.txt", "text")
    with pytest.raises(OSError):
        InputFile.from_path(tmp_path / "missing.txt")


def test_file_methods_and_round_trip(tmp_path):
    f = File(id="file_x_r0_0", name="out.txt", text="hello", bytes=5, source=FileSource("shell", 0, 1))
    assert f.is_text() and not f.is_binary() and not f.is_truncated() and f.preview == "hello"
    assert open(f.save(tmp_path)).read() == "hello"
    assert File.from_dict(json.loads(json.dumps(f.to_dict()))) == f
    elided = File(id="file_y", name="big.png", bytes=10_000_000)
    assert elided.is_truncated() and elided.is_image() and elided.is_binary()
    with pytest.raises(OSError, match="find_file"):
        elided.save(tmp_path / "big.png")
    missing = File(id="file_z", name="report.csv", error_code="missing", error_message="never written")
    assert missing.is_error() and not missing.is_truncated()
    with pytest.raises(OSError):
        missing.save(tmp_path / "r.csv")


def test_lora_adapter_generation():
    g = LoraAdapterGeneration(GEN.upper())
    assert g.generation == GEN and str(g) == GEN
    for bad in ("abc", GEN + "0", "g" * 64):
        with pytest.raises(ValueError, match="64"):
            LoraAdapterGeneration(bad)
    with pytest.raises(TypeError):
        LoraAdapterGeneration(123)
    info = LoraAdapterInfo(alias="a", source="s", revision=None, generation=GEN, rank=8, bytes=1024)
    assert info.exact() == LoraAdapterGeneration(GEN)


def test_agent_config_defaults_and_coercion():
    pol = SandboxPolicy(network="FULL")
    assert (pol.max_memory_mb, pol.max_cpu_secs, pol.max_procs, pol.network) == (2048, 300, 64, NetworkMode.Full)
    assert SandboxPolicy().network is NetworkMode.Loopback and SandboxPolicy().extra_env == []
    cfg = CodeExecutionConfig(permission="ask")
    assert cfg.permission is CodeExecutionPermission.Ask and cfg.timeout_secs == 60
    assert ShellConfig().timeout_secs == 600 and ShellConfig().permission is AgentPermission.Auto
    with pytest.raises(ValueError, match="invalid network mode"):
        SandboxPolicy(network="wifi")
    dec = AgentToolApprovalDecision("approve")
    assert dec.decision is AgentToolApprovalDecisionKind.Approve and dec.approved
    assert AgentToolApprovalDecision.deny("no").message == "no" and not AgentToolApprovalDecision.deny().approved
    assert AgentToolApprovalDecision.approve(remember_for_session=True).remember_for_session
    meta = AgentToolMetadata(AgentToolSource.BuiltIn, AgentToolKind.CodeExecution, "Python code")
    appr = AgentToolApproval.for_call("s1", 0, meta, {"code": "print(1)"})
    assert appr.approval_id.startswith("appr_") and appr.code == "print(1)" and appr.arguments() == {"code": "print(1)"}


def test_sum_types_web_search_and_mcp():
    loc = ApproximateUserLocation("Paris", "FR", "IDF", "Europe/Paris")
    u = WebSearchUserLocation.approximate(loc)
    assert isinstance(u, WebSearchUserLocation) and u == WebSearchUserLocation.Approximate(loc)
    assert u.description_suffix() == "The user's location is: Paris, IDF, FR, Europe/Paris."
    opts = WebSearchOptions(SearchContextSize.Low, u, "search desc")
    assert opts.token_budget() == 4096 and WebSearchOptions().token_budget() == 8192
    with pytest.raises(TypeError):
        McpServerSourcePy.Http("http://127.0.0.1:1")  # all positional args required
    src = McpServerSourcePy.Process("python", ["-m", "server"], None, {"A": "1"})
    assert src.kind == "Process" and isinstance(src, McpServerSourcePy)
    cfg = McpClientConfigPy([McpServerConfigPy("id", "name", src, tool_prefix="fs")])
    assert cfg.auto_register_tools and cfg.servers[0].enabled
    with pytest.raises(TypeError, match="source"):
        McpServerConfigPy("id", "name", "python server.py")


def test_anymoe_config():
    lora = AnyMoeExpertType.LoraAdapter(8, 16, ["gate_proj"])
    assert isinstance(lora, AnyMoeExpertType) and lora.alpha == 16.0
    cfg = AnyMoeConfig(896, "data.json", "model.layers", "mlp", ["a/b"], AnyMoeExpertType.FineTuned())
    assert (cfg.layers, cfg.lr, cfg.epochs, cfg.batch_size, cfg.training) == ([], 1e-3, 100, 4, True)
    with pytest.raises(ValueError, match=".csv"):
        AnyMoeConfig(896, "d.json", "p", "m", ["a"], lora, loss_csv_path="loss.svg")


def test_error_tree():
    assert issubclass(ConfigError, ValueError) and issubclass(RequestError, AgentkitError)
    err = LoraAdapterError("nope", code="lora_adapter_not_found")
    assert isinstance(err, ValueError) and err.code == "lora_adapter_not_found"
    assert pickle.loads(pickle.dumps(err)).code == "lora_adapter_not_found"


def test_value_modules_do_not_import_torch():
    code = ("import sys; import agentkit.api.requests, agentkit.api.responses, agentkit.api.which, agentkit.api.enums, "
            "agentkit.api.agent_options, agentkit.api.files, agentkit.api.model_options, agentkit.errors; "
            "bad = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]; "
            "assert not bad, bad")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd="/tmp", env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
