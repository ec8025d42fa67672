"""LocalBackend: the in-process `Engine` behind the `Backend` protocol.

Scope: the thin adapter from `agentkit.models.backend.Backend` to `agentkit.engine.engine.Engine`
(submit, cancel, shutdown, health), plus `call` for work that must run on the engine thread
(online calibration). Imports no torch itself; the engine it wraps does.

Non-goals: loading the model (`agentkit.models.local`), remote backends.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from agentkit.models.backend import BackendHealth

if TYPE_CHECKING:
    from agentkit.engine.engine import Engine
    from agentkit.engine.sequence import EngineRequest

__all__ = ["LocalBackend"]


class LocalBackend:
    """Serves requests on a local `Engine` thread; `kind` is its model runner's kind."""

    def __init__(self, engine: Engine, kind: str) -> None:
        self.engine = engine
        self.kind = kind
        self._closed = False

    def submit(self, req: EngineRequest) -> EngineRequest:
        return self.engine.submit(req)

    def cancel(self, req: EngineRequest) -> None:
        req.cancel()

    def shutdown(self) -> None:
        self._closed = True
        self.engine.shutdown()

    def health(self) -> BackendHealth:
        alive = not self._closed and self.engine.serving
        detail = "" if alive else ("shut down" if self._closed else "engine thread not running")
        return BackendHealth(alive=alive, active=self.engine.num_active, detail=detail)

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn()` on the engine thread between two steps (see `Engine.call`)."""
        return self.engine.call(fn)

    def logits(self, token_ids: list[int], last: int) -> Any:
        """Logits of the `last` positions of a fresh sequence, computed on the engine thread (scoring;
        an optional Backend capability that `agentkit.chat.tool_selection` uses when present)."""
        return self.engine.call(lambda: self.engine.runner.logits_for(token_ids, last=last)).result()
