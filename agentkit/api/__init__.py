"""The mistralrs-compatible value types: enums, `Which`, requests, responses, files, options.

Scope: the objects a `mistralrs` 0.9.5 user constructs or receives, with the wheel's signatures
and construction-time checks (`checks`). `agentkit/__init__` re-exports the public ones; import
them from `agentkit`.

Non-goals: behaviour (loading, generating, running tools); see `agentkit.chat`, `agentkit.agent`,
`agentkit.models`.
"""
