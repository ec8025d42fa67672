"""Which tool a forced call (`tool_choice="required"`) goes to: the name the model finds likeliest.

Scope: under "required" with several tools, greedy grammar-constrained decoding commits to a
tool on the first token of its name, so a name whose first token is common ("get" of
`get_weather`) wins even when the rest of it is unlikely (SmolLM2-135M writes `get_weather` for
"What is 144 divided by 12?"). `choose_required_tool` instead scores each offered name as the
continuation of the family's call opening (`<tool_call>\n{"name": "` for Hermes), through the
`",` that ends it, after the prompt: the mean log-probability of its tokens. The continuation is
tokenized as the model writes it (`",` is one token; a lone closing `"` is a split SmolLM2's
tokenizer never makes, and cost every name 3-6 nats of noise that decided the choice). The mean,
not the sum, so a name is not penalised for its length: measured on bench/agent_answers.py, the
right tool for 18/20 questions and 10/10 held-out ones (the sum: 17/20 and 9/10). The request is
then forced to the best name; its arguments are decoded as before. One forward pass per offered
tool over the prompt plus a few tokens, on the engine thread; only the continuation's logits are kept.

Applies to greedy, single-choice requests with 2 to `MAX_SCORED_TOOLS` tools and no user
grammar; sampled requests keep sampling the name token by token (a scored argmax would make
them deterministic), more tools keep the plain grammar (the cost grows with their number).

Non-goals: "auto" (whether to call at all stays the model's), scoring arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from agentkit.chat.tool_prompt import ToolPlan

__all__ = ["MAX_SCORED_TOOLS", "ToolScore", "call_opening", "choose_required_tool", "score_tool_names"]

MAX_SCORED_TOOLS = 16
# The text a forced call starts with in each family, up to the opening quote of the name (the
# grammar writes JSON with ": " and ", " separators, "name" first, so `",` follows the name).
_OPENING = {"hermes": '<tool_call>\n{"name": "', "llama3": '<|python_tag|>{"name": "',
            "mistral": '[TOOL_CALLS][{"name": "', "generic": '{"name": "'}


@dataclass(frozen=True)
class ToolScore:
    """A tool name's mean log-probability per token as the continuation of the call opening (`tokens` scored)."""

    name: str
    logprob: float
    tokens: int


def call_opening(family: str, name: str) -> str:
    """The text of a call to `name` in `family` through the `",` after the name (so a name that
    is a prefix of another is not scored as if the longer one might follow)."""
    return _OPENING.get(family, _OPENING["generic"]) + name + '",'


def score_tool_names(host: Any, prompt_ids: list[int], plan: ToolPlan) -> list[ToolScore]:
    """Each offered tool's name scored after `prompt_ids` (see the module docstring), best first.

    Tokens all the openings share are not scored (they do not discriminate); ties keep the
    offered order.
    """
    import torch

    conts = [host.tokenizer.encode(call_opening(plan.family, n), add_special_tokens=False) for n in plan.names]
    shared = 0
    while all(len(c) > shared + 1 for c in conts) and len({c[shared] for c in conts}) == 1:
        shared += 1
    scores = []
    for name, cont in zip(plan.names, conts):
        ids = list(prompt_ids) + cont
        k = len(cont) - shared  # scored tokens: cont[shared:], predicted by the positions before them
        logits = host.backend.logits(ids, k + 1)
        logp = torch.log_softmax(logits[:-1].float(), dim=-1)
        target = torch.tensor(cont[shared:], device=logp.device)
        mean = float(logp.gather(1, target[:, None]).mean())
        scores.append(ToolScore(name=name, logprob=mean, tokens=k))
    return sorted(scores, key=lambda s: -s.logprob)


def choose_required_tool(host: Any, prompt_ids: list[int], plan: ToolPlan | None, *, greedy: bool,
                         n_choices: int = 1) -> ToolPlan | None:
    """`plan` forced to its likeliest tool when it is a "required" choice among 2 to
    `MAX_SCORED_TOOLS` tools of a greedy, single-choice request; else `plan` unchanged."""
    if (plan is None or plan.choice != "required" or not greedy or n_choices != 1
            or not 2 <= len(plan.tools) <= MAX_SCORED_TOOLS or not hasattr(host.backend, "logits")):
        return plan
    best = score_tool_names(host, prompt_ids, plan)[0]
    return replace(plan, choice={"type": "function", "function": {"name": best.name}})
