"""Built-in plugin: speculative decoding, on by default with exact n-gram drafts.

Scope: `SpeculativePlugin` declares the `which_draft` and `speculative_gamma` Runner options
(`runner_options`) and answers `engine_draft_proposer` once per loaded model (registered first,
so it is called last: a third-party plugin's proposer wins):
- `Runner(which_draft=Which..., speculative_gamma=k)`: a draft model (`DraftModelProposer`) of
  the same vocabulary proposes up to k tokens per step (a different vocabulary is a ConfigError);
- otherwise prompt lookup in the request's own context plus a suffix cache shared by the
  model's requests (`NgramProposer`): exact, nearly free when it finds nothing, and switched off
  per request by the adaptive controller when its drafts stop paying.
`SpeculativePlugin(mode=...)` passed in `Runner(plugins=[...])` overrides the default: "auto"
(the above), "ngram", "prompt_lookup", "draft" or "off"; `max_draft` bounds the n-gram draft
length. `AGENTKIT_DISABLE_PLUGINS=speculative` removes the plugin (then `which_draft` raises
`NotSupportedError`, and nothing speculates).

Non-goals: the engine side (agentkit.engine.speculative), MTP heads (`mtp_model`).
"""

from __future__ import annotations

from typing import Any

from agentkit.config import RunnerConfig
from agentkit.engine.speculative.protocol import Draft, DraftContext, DraftTarget
from agentkit.errors import ConfigError
from agentkit.hookspecs import hookimpl

__all__ = ["MODES", "SpeculationOff", "SpeculativePlugin"]

MODES = ("auto", "ngram", "prompt_lookup", "draft", "off")


class SpeculationOff:
    """A proposer that never drafts; `max_draft = 0` makes the engine skip speculation entirely."""

    max_draft = 0

    def propose(self, ctx: DraftContext, k: int) -> Draft:
        return Draft([])

    def finished(self, ctx: DraftContext) -> None:
        return None


class SpeculativePlugin:
    """Selects the proposer of each loaded model; one instance per Runner."""

    plugin_name = "speculative"

    def __init__(self, mode: str = "auto", max_draft: int = 10) -> None:
        if mode not in MODES:
            raise ValueError(f"SpeculativePlugin mode must be one of {MODES}, got {mode!r}")
        if isinstance(max_draft, bool) or not isinstance(max_draft, int) or max_draft < 1:
            raise ValueError(f"SpeculativePlugin max_draft must be an int >= 1, got {max_draft!r}")
        self.mode = mode
        self.max_draft = max_draft

    @hookimpl
    def runner_options(self) -> list[str]:
        """This plugin serves `Runner(which_draft=..., speculative_gamma=...)`."""
        return ["which_draft", "speculative_gamma"]

    @hookimpl
    def engine_draft_proposer(self, target: DraftTarget, config: RunnerConfig) -> Any:
        """The proposer for `target` under this plugin's mode and the Runner's options."""
        mode = self.mode
        if mode == "auto":
            mode = "draft" if config.which_draft is not None else "ngram"
        if mode == "off":
            return SpeculationOff()
        if mode == "draft":
            if config.which_draft is None:
                raise ConfigError("SpeculativePlugin(mode='draft') needs Runner(which_draft=Which...)")
            from agentkit.engine.speculative.draft_model import DraftModelProposer

            runner, tokenizer = target.load_model(config.which_draft)
            return DraftModelProposer(target, runner, tokenizer, gamma=config.speculative_gamma)
        if mode == "prompt_lookup":
            from agentkit.engine.speculative.prompt_lookup import PromptLookupProposer

            return PromptLookupProposer(max_draft=self.max_draft)
        from agentkit.engine.speculative.suffix_cache import NgramProposer

        return NgramProposer(max_draft=self.max_draft)

    def __repr__(self) -> str:
        return f"SpeculativePlugin(mode={self.mode!r}, max_draft={self.max_draft})"
