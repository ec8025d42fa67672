"""Backend: the protocol a served model's requests go through (issue 10 item 3).

Scope: what the chat, tool and agent layers may ask of whatever runs a model: `submit` an
`EngineRequest` (its `RequestOutput` events then arrive on `req.outputs`, ending with one whose
`finished` is true), `cancel` it, `shutdown` and `health`. The local engine is the first backend
(`agentkit.models.local_backend.LocalBackend`); a remote one implements the same four methods.
Torch-free: the layers above import this module, never `Engine`.

Non-goals: tokenization and chat templates (the `ServedModel` holds those, in the caller's
process), engine-thread calls such as online calibration (local only, see `LocalBackend.call`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agentkit.engine.sequence import EngineRequest

__all__ = ["Backend", "BackendHealth"]


@dataclass(frozen=True)
class BackendHealth:
    """A backend's state: `alive` while it accepts requests; `active` requests in flight."""

    alive: bool
    active: int = 0
    detail: str = ""


@runtime_checkable
class Backend(Protocol):
    """Runs tokenized requests for one model; every method is safe from any thread."""

    kind: str
    """What runs the model, e.g. "native" or "transformers" for the local engine."""

    def submit(self, req: EngineRequest) -> EngineRequest:
        """Queue `req`; its events arrive on `req.outputs`. Raises RuntimeError once shut down."""
        ...

    def cancel(self, req: EngineRequest) -> None:
        """Stop `req` (a no-op once finished); it still ends with a finished event."""
        ...

    def shutdown(self) -> None:
        """Stop serving; requests in flight end with an error event. Idempotent."""
        ...

    def health(self) -> BackendHealth:
        """Whether the backend still serves, and how many requests it holds."""
        ...
