"""The server-side agent loop: generate, run the called tools, repeat; and its session history.

Scope: `loop` (rounds, permissions, approvals, usage), `history` (how a request's messages join
the stored session history), `tool_limits` (time and context bounds on one tool call, where present).

Non-goals: the session format and stores (`agentkit.sessions`, `agentkit.session_store`), tool
definitions (`agentkit.tools`), plugin dispatch (`agentkit.plugin_host`).
"""
