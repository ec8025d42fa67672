"""One served model and the table of them: `Which` -> loaded model -> engine thread.

Scope: `local` (build a model host from a `Which`: files, weights, tokenizer, template, engine),
`table` (the thread-safe model table with aliases, leases, unload/reload), `isq` (in-situ
quantization names -> weight formats), `calibration` (online calibration methods, where present).

Non-goals: the engine internals (`agentkit.engine`), request processing (`agentkit.chat`).
"""
