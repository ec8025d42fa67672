"""Forced tool choice by likelihood (agentkit.chat.tool_selection), on a scripted character-level model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from agentkit.chat.tool_prompt import ToolPlan
from agentkit.chat.tool_selection import (
    MAX_SCORED_TOOLS,
    call_opening,
    choose_required_tool,
    score_tool_names,
)

V = 128


def _tool(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


class _CharModel:
    """A character-level 'model': after `"name": "` it prefers 'g' (log-odds 2 over 'c'), but
    after `"name": "g` the next letter it expects is 'o', not 'e': `get_weather` starts likely and
    goes on unlikely, as SmolLM2's "get" + "_" + "weather" does for arithmetic questions."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []

    def next_logits(self, prefix: str) -> torch.Tensor:
        x = torch.zeros(V)
        if prefix.endswith('"name": "'):
            x[ord("g")], x[ord("c")] = 8.0, 6.0
        elif prefix.endswith('"name": "g'):
            x[ord("o")] = 12.0
        return x

    def logits_for(self, ids: list[int], last: int | None = None) -> torch.Tensor:
        self.calls.append((len(ids), last))
        text = "".join(chr(i) for i in ids)
        rows = [self.next_logits(text[: i + 1]) for i in range(len(ids))]
        return torch.stack(rows[-last:] if last else rows)


def _host(model: _CharModel) -> SimpleNamespace:
    tok = SimpleNamespace(encode=lambda text, add_special_tokens=False: [ord(c) % V for c in text])
    return SimpleNamespace(tokenizer=tok, backend=SimpleNamespace(logits=lambda ids, last: model.logits_for(ids, last)))


def _plan(*names: str, choice="required", family="hermes") -> ToolPlan:
    return ToolPlan(tools=[_tool(n) for n in names], choice=choice, family=family, inject=True)


PROMPT = [ord(c) for c in "user: what is 144 / 12?\nassistant: "]


def test_the_whole_name_decides_not_its_first_token():
    model = _CharModel()
    plan = choose_required_tool(_host(model), PROMPT, _plan("get_weather", "calculator"), greedy=True)
    # greedy on the first letter would take 'g'; over the whole name, calculator is far likelier
    assert plan.forced_name == "calculator" and plan.names == ["get_weather", "calculator"]
    # one forward per tool, keeping only the logits of the scored positions (not the whole prompt)
    assert all(last is not None and last < 20 for _, last in model.calls) and len(model.calls) == 2


def test_scores_average_the_name_tokens_after_the_shared_opening():
    scores = score_tool_names(_host(_CharModel()), PROMPT, _plan("get_weather", "calculator"))
    assert [s.name for s in scores] == ["calculator", "get_weather"]
    by = {s.name: s for s in scores}
    assert by["calculator"].tokens == len('calculator",')  # the name and the `",` that ends it
    lse = torch.logsumexp(torch.tensor([8.0, 6.0] + [0.0] * (V - 2)), 0).item()
    uniform = torch.log(torch.tensor(float(V))).item()
    assert by["calculator"].logprob == pytest.approx((6.0 - lse - len('alculator",') * uniform) / 12, abs=1e-3)
    after_g = torch.logsumexp(torch.tensor([12.0] + [0.0] * (V - 1)), 0).item()  # 'e' after 'g' costs ~12 nats
    assert by["get_weather"].logprob == pytest.approx(
        (8.0 - lse - after_g - len('t_weather",') * uniform) / 13, abs=1e-3)


def test_longer_name_is_not_penalised_for_its_length():
    """Every token equally likely: the mean ranks a long and a short name alike (the sum would
    always prefer the short one); ties keep the offered order."""
    class Flat(_CharModel):
        def next_logits(self, prefix: str) -> torch.Tensor:
            return torch.zeros(V)

    plan = _plan("get_current_weather", "calc")
    assert [s.name for s in score_tool_names(_host(Flat()), PROMPT, plan)] == ["get_current_weather", "calc"]


def test_a_name_that_prefixes_another_is_scored_up_to_its_quote():
    assert call_opening("hermes", "get") == '<tool_call>\n{"name": "get",'
    scores = score_tool_names(_host(_CharModel()), PROMPT, _plan("get", "get_weather"))
    assert {s.name: s.tokens for s in scores} == {"get": 2, "get_weather": 10}  # both past the shared "get"


@pytest.mark.parametrize("kw, plan", [
    ({"greedy": False}, _plan("get_weather", "calculator")),                   # sampled: keep sampling the name
    ({"greedy": True, "n_choices": 2}, _plan("get_weather", "calculator")),    # n > 1: choices may differ
    ({"greedy": True}, _plan("get_weather")),                                  # one tool: nothing to choose
    ({"greedy": True}, _plan("get_weather", "calculator", choice="auto")),     # auto: calling stays optional
    ({"greedy": True}, _plan("a", "b", choice={"type": "function", "function": {"name": "a"}})),  # already named
    ({"greedy": True}, _plan(*[f"t{i}" for i in range(MAX_SCORED_TOOLS + 1)])),  # too many: cost grows with N
])
def test_left_alone(kw, plan):
    model = _CharModel()
    assert choose_required_tool(_host(model), PROMPT, plan, **kw) is plan and model.calls == []
    assert choose_required_tool(_host(model), PROMPT, None, greedy=True) is None
