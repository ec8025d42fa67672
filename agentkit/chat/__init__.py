"""Request <-> engine request: the input and output processing of one chat or completion.

Scope: render, bound and tokenize a request into an `EngineRequest` (`processing`,
`prompt_bounds`), offer tools in the prompt and constrain the call (`tool_prompt`), turn engine
outputs into responses and chunk streams (`processing`, `streams`), parse tool calls out of the
generated text (`tool_parsing`).

Non-goals: running tools and multi-round turns (`agentkit.agent`), loading models
(`agentkit.models`), the engine itself (`agentkit.engine`).
"""
