"""The Runner's model-management methods (mistralrs's multi-model API), over its `ModelTable`.

Scope: aliases, the default model, listing, status, requests in flight, unload/reload and
removal, and `served_model` (a loaded model's tokenizer, context and backend, for plugins and
tools), each a thin, documented call into `agentkit.models.table.ModelTable`, mixed into
`agentkit.runner.Runner`.

Non-goals: loading a model (`Runner.add_model`, `agentkit.models.local`), routing requests.
"""

from __future__ import annotations

from agentkit.models.served import ServedModel
from agentkit.models.table import ModelTable

__all__ = ["ModelManagement"]


class ModelManagement:
    """Mixin: needs `self._models` (a `ModelTable`) and `self._models_changed()` (tells plugins)."""

    _models: ModelTable

    def _models_changed(self) -> None:  # pragma: no cover - the Runner's
        raise NotImplementedError

    def add_model_alias(self, alias: str, model_id: str | None = None) -> None:
        """Make `alias` another name for a model (an agentkit extension)."""
        self._models.add_alias(alias, model_id)

    def list_models(self) -> list[str]:
        """Ids of the loaded models (primary ids, not aliases)."""
        return self._models.list_loaded()

    def get_default_model_id(self) -> str | None:
        """The model used when a request names none."""
        return self._models.default

    def set_default_model_id(self, model_id: str) -> None:
        """Route requests without a model id to `model_id` (an id or alias of a known model)."""
        self._models.set_default(model_id)
        self._models_changed()

    def is_model_loaded(self, model_id: str) -> bool:
        """Whether `model_id` is loaded (unknown ids give False)."""
        return self._models.is_loaded(model_id)

    def requests_in_flight(self, model_id: str | None = None) -> int:
        """How many requests hold the model now (a stream counts until it is exhausted or closed)."""
        return self._models.in_flight(model_id)

    def served_model(self, model_id: str | None = None) -> ServedModel:
        """The loaded chat model: its tokenizer, chat template, `max_seq_len` and `Backend` (`.engine`
        for a local one); reloads an unloaded model. It satisfies `agentkit.handles.ModelHandle`.

        Hold no reference past an `unload_model`: the Runner then serves a new one. Raises
        ValueError for an embedding model, ModelNotFoundError for an unknown id.
        """
        lease = self._models.acquire(model_id)
        try:
            host = lease.host
        finally:
            lease.release()
        if not isinstance(host, ServedModel):
            raise ValueError(f"model {host.model_id!r} is an embedding model: use send_embedding_request")
        return host

    def unload_model(self, model_id: str, timeout: float | None = None) -> None:
        """Free a model's weights and KV cache, keeping its configuration so it can be reloaded.

        Requests arriving from now on wait, and reload the model once the unload is over.
        Requests in flight (a stream counts until it is exhausted or closed) are waited for;
        with `timeout` (seconds), those still running then are cancelled and end with a
        ValueError ("model X was unloaded while the request was running"). Do not call it
        from a thread that is itself consuming a stream of the same model without a timeout.
        Raises ValueError if the model is already unloaded, ModelNotFoundError if unknown.
        """
        self._models.unload(model_id, timeout=timeout)

    def reload_model(self, model_id: str) -> None:
        """Load an unloaded model again (blocking; a no-op for a loaded model).

        Requests to an unloaded model reload it automatically too.
        """
        self._models.reload(model_id)

    def list_models_with_status(self) -> list[tuple[str, str]]:
        """`(model id, status)` for every model; status is "loaded", "unloaded" or "reloading"."""
        return self._models.list_with_status()

    def list_unloaded_models(self) -> list[str]:
        """Ids of the unloaded models."""
        return self._models.list_unloaded()

    def get_model_status(self, model_id: str) -> str | None:
        """"loaded", "unloaded" or "reloading"; None for an unknown id."""
        return self._models.status(model_id)

    def remove_model(self, model_id: str, timeout: float | None = None) -> None:
        """Shut down and forget a model (in-flight requests are waited for, as in `unload_model`).

        Raises ValueError "Cannot remove the last model" when it is the only one; if it was
        the default, another model (a loaded one if any) becomes the default.
        """
        self._models.remove(model_id, timeout=timeout)
        self._models_changed()
