"""ModelTable: the thread-safe table of models one `Runner` serves (runner-api.md §2.10).

Each entry holds a primary id, a loader closure (builds a fresh host: `ServedModel` or
`EmbeddingHost`), the live host or None, a status ("loaded", "unloaded", "reloading") and the
leases in flight. The table also keeps an alias map (alias -> primary id) and the default id.
Every id argument is resolved through the aliases first; None means the default model.

Concurrency contract:

* `acquire` returns a `Lease` on a loaded host. A request holds its lease for its whole life
  (a streamed response until the stream is exhausted or closed), so the table knows what is in
  flight. Acquiring an unloaded model reloads it (the acquiring thread loads; others wait), a
  model that is reloading or being unloaded makes the caller wait.
* `unload` stops new leases, waits for the leases in flight to be released (optionally up to a
  timeout, after which their requests are aborted through the callbacks registered with
  `Lease.on_abort`), shuts the host down, drops every reference the table holds and runs the
  garbage collector. The loader is kept, so the model can be reloaded.
* Loading and shutting down run outside the table lock: requests to other models keep flowing.

Non-goals: loading itself (see `agentkit.models.local.load_model`), request handling, and memory
accounting (hosts free their memory when the last reference goes).
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentkit.errors import ModelLoadError, ModelNotFoundError

__all__ = ["LOADED", "RELOADING", "UNLOADED", "Lease", "ModelTable"]

LOADED = "loaded"
UNLOADED = "unloaded"
RELOADING = "reloading"

Loader = Callable[[], Any]
"""Builds and starts a fresh host (`ServedModel | EmbeddingHost`); must not capture a live host."""


class Lease:
    """The right to use one model's host until `release()`; a context manager.

    Leaving the `with` block releases the lease unless `keep()` handed it over to a longer-lived
    owner (a stream) and no exception is propagating. `release()` is idempotent and thread-safe;
    a lease that is garbage collected unreleased is released then.
    """

    __slots__ = ("__weakref__", "_aborts", "_entry", "_host", "_kept", "_released", "_table", "model_id")

    def __init__(self, table: ModelTable, entry: _Entry, host: Any) -> None:
        self.model_id = entry.model_id
        self._table, self._entry, self._host = table, entry, host
        self._aborts: list[Callable[[str], None]] = []
        self._released = False
        self._kept = False

    @property
    def host(self) -> Any:
        """The loaded host (`ServedModel` or `EmbeddingHost`); RuntimeError once released."""
        host = self._host
        if host is None:
            raise RuntimeError(f"the lease on model {self.model_id!r} was released")
        return host

    @property
    def released(self) -> bool:
        """Whether the lease was released (or force-released by an unload that timed out)."""
        return self._released

    def on_abort(self, callback: Callable[[str], None]) -> None:
        """Register `callback(reason)`: called if an unload times out while this lease is in flight.

        The callback must make the request end promptly (e.g. cancel the engine request and post
        an error event to its output queue); it runs before the host is shut down.
        """
        self._aborts.append(callback)

    def keep(self) -> Lease:
        """Hand the lease over: leaving the `with` block normally no longer releases it."""
        self._kept = True
        return self

    def release(self) -> None:
        """Give the model back (idempotent); drops this lease's reference to the host."""
        table = self._table
        if table is not None:
            table._release(self)

    def _drop(self) -> None:
        self._released = True
        self._host = None
        self._table = None
        self._entry = None
        self._aborts = []

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None or not self._kept:
            self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"Lease({self.model_id!r}, released={self._released})"


@dataclass(eq=False)
class _Entry:
    model_id: str
    loader: Loader | None
    host: Any = None
    status: str = LOADED
    busy: bool = False  # an unload/remove is draining or shutting the host down
    leases: weakref.WeakSet[Lease] = field(default_factory=weakref.WeakSet)  # a dropped lease releases itself
    failures: int = 0
    last_error: BaseException | None = None


class ModelTable:
    """Thread-safe table of models: ids, aliases, default, live hosts and in-flight leases."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._entries: dict[str, _Entry] = {}
        self._aliases: dict[str, str] = {}
        self._default: str | None = None
        self._closed = False

    # ---- registration ------------------------------------------------------------------------
    def check_new(self, model_id: str, alias: str | None = None) -> None:
        """Raise ValueError if `model_id` or `alias` is already taken (by an id or an alias)."""
        with self._cond:
            self._check_new(model_id, alias)

    def _check_new(self, model_id: str, alias: str | None) -> None:
        if not isinstance(model_id, str) or not model_id:
            raise TypeError(f"model_id must be a non-empty str, got {model_id!r}")
        if alias is not None and (not isinstance(alias, str) or not alias):
            raise TypeError(f"alias must be a non-empty str or None, got {alias!r}")
        if alias == model_id:
            raise ValueError(f"alias {alias!r} is the model id itself; pass alias=None")
        for name in (model_id, alias):
            if name is not None and (name in self._entries or name in self._aliases):
                raise ValueError(f"Model {name} already exists: choose another model_id/alias or remove it first")

    def add(self, model_id: str, loader: Loader | None, host: Any = None, alias: str | None = None,
            default: bool = False) -> str:
        """Register a model; loads it with `loader()` when `host` is None. Returns `model_id`.

        The first model becomes the default, as does any model added with `default=True`. A model
        without a loader cannot be unloaded (mistralrs: "no loader config").
        """
        with self._cond:
            self._check_open()
            self._check_new(model_id, alias)
        if host is None:
            if loader is None:
                raise ValueError(f"model {model_id!r} needs a loader or a host")
            host = loader()
        with self._cond:
            try:
                self._check_open()
                self._check_new(model_id, alias)  # another thread may have won the race meanwhile
            except BaseException:
                host.shutdown()
                raise
            self._entries[model_id] = _Entry(model_id=model_id, loader=loader, host=host)
            if alias is not None:
                self._aliases[alias] = model_id
            if default or self._default is None:
                self._default = model_id
            self._cond.notify_all()
        return model_id

    def add_alias(self, alias: str, model_id: str | None) -> None:
        """Make `alias` another name for the model `model_id` resolves to."""
        with self._cond:
            target = self.resolve(model_id)
            if not isinstance(alias, str) or not alias:
                raise TypeError(f"alias must be a non-empty str, got {alias!r}")
            if alias in self._entries or self._aliases.get(alias, target) != target:
                raise ValueError(f"Model {alias} already exists: choose another alias")
            self._aliases[alias] = target

    # ---- lookup ------------------------------------------------------------------------------
    def resolve(self, model_id: str | None) -> str:
        """The primary id for an id, an alias or None (the default); ModelNotFoundError otherwise."""
        if model_id is not None and not isinstance(model_id, str):
            raise TypeError(f"model_id must be a str or None, got {type(model_id).__name__}")
        with self._cond:
            if model_id is None:
                if self._default is None:
                    raise ModelNotFoundError("Model (default) not found: no default model is set")
                return self._default
            if model_id in self._entries:
                return model_id
            target = self._aliases.get(model_id)
            if target is None:
                raise ModelNotFoundError(f"Model {model_id} not found")
            return target

    @property
    def default(self) -> str | None:
        """The default model id (None only for an empty table)."""
        with self._cond:
            return self._default

    def set_default(self, model_id: str) -> None:
        """Route id-less requests to `model_id` (an id or alias of a known model, loaded or not)."""
        with self._cond:
            self._default = self.resolve(model_id)

    def status(self, model_id: str | None) -> str | None:
        """"loaded", "unloaded" or "reloading"; None for an unknown id."""
        with self._cond:
            try:
                return self._entries[self.resolve(model_id)].status
            except ModelNotFoundError:
                return None

    def is_loaded(self, model_id: str | None) -> bool:
        """Whether the model is loaded (unknown ids give False)."""
        return self.status(model_id) == LOADED

    def ids(self) -> list[str]:
        """Every primary id, in insertion order."""
        with self._cond:
            return list(self._entries)

    def list_loaded(self) -> list[str]:
        """Primary ids of the loaded models."""
        return [mid for mid, st in self.list_with_status() if st == LOADED]

    def list_unloaded(self) -> list[str]:
        """Primary ids of the unloaded models (not those reloading)."""
        return [mid for mid, st in self.list_with_status() if st == UNLOADED]

    def list_with_status(self) -> list[tuple[str, str]]:
        """`(primary id, status)` for every model, in insertion order."""
        with self._cond:
            return [(mid, e.status) for mid, e in self._entries.items()]

    def aliases(self) -> dict[str, str]:
        """A copy of the alias map (alias -> primary id)."""
        with self._cond:
            return dict(self._aliases)

    def in_flight(self, model_id: str | None) -> int:
        """How many leases on the model are outstanding."""
        with self._cond:
            return len(self._entries[self.resolve(model_id)].leases)

    # ---- leases ------------------------------------------------------------------------------
    def acquire(self, model_id: str | None = None) -> Lease:
        """A lease on the model's live host; reloads an unloaded model, waits while one reloads/unloads."""
        with self._cond:
            mid = self.resolve(model_id)
            e = self._entries[mid]
            seen_failures = e.failures
            while True:
                self._check_open()
                if self._entries.get(mid) is not e:
                    raise ModelNotFoundError(f"Model {model_id if model_id is not None else mid} not found")
                if e.failures != seen_failures:
                    raise ModelLoadError(f"reloading model {mid} failed: {e.last_error}") from e.last_error
                if not e.busy and e.status == LOADED:
                    lease = Lease(self, e, e.host)
                    e.leases.add(lease)
                    return lease
                if not e.busy and e.status == UNLOADED:
                    e.status = RELOADING
                    self._cond.notify_all()
                    break
                self._cond.wait()
        return self._reload(e)

    def _reload(self, e: _Entry) -> Lease:
        """Run `e.loader()` outside the lock (status is RELOADING); return the caller's lease."""
        try:
            if e.loader is None:
                raise ValueError(f"Model {e.model_id} has no loader config and cannot be reloaded")
            host = e.loader()
        except BaseException as exc:
            with self._cond:
                e.status = UNLOADED
                e.failures += 1
                e.last_error = exc
                self._cond.notify_all()
            raise
        with self._cond:
            if self._closed or self._entries.get(e.model_id) is not e:
                e.status = UNLOADED
                self._cond.notify_all()
                stale = host
            else:
                e.host, e.status = host, LOADED
                lease = Lease(self, e, host)
                e.leases.add(lease)
                self._cond.notify_all()
                return lease
        stale.shutdown()
        raise ModelNotFoundError(f"Model {e.model_id} was removed while it was reloading")

    def _release(self, lease: Lease) -> None:
        with self._cond:
            if lease._released:
                return
            e = lease._entry
            if e is not None:
                e.leases.discard(lease)
            lease._drop()
            self._cond.notify_all()

    # ---- unload / reload / remove ------------------------------------------------------------
    def unload(self, model_id: str | None, timeout: float | None = None) -> None:
        """Free the model's host, keeping its loader so it can be reloaded.

        New requests wait from now on (and reload the model once the unload finished). Requests
        in flight are waited for; with `timeout` (seconds) the ones still running then are
        aborted through their `on_abort` callbacks and end with an error. Raises ValueError if the
        model is already unloaded or has no loader, ModelNotFoundError for an unknown id.
        Calling it while holding a lease on the same model without a timeout deadlocks.
        """
        with self._cond:
            mid = self.resolve(model_id)
            e = self._entries[mid]
            if e.loader is None:
                raise ValueError(f"Model {mid} has no loader config and cannot be unloaded")
            self._wait_idle(e)
            if e.status == UNLOADED:
                raise ValueError(f"Model {mid} is already unloaded")
            e.busy = True
            aborts = self._drain(e, timeout)
            box, e.host = [e.host], None
            e.status = UNLOADED
        self._finish_shutdown(e, box, aborts, f"model {mid} was unloaded while the request was running")

    def reload(self, model_id: str | None) -> None:
        """Block until the model is loaded again (no-op for a loaded model)."""
        self.acquire(model_id).release()

    def remove(self, model_id: str | None, timeout: float | None = None) -> None:
        """Shut down and forget a model (draining it like `unload`); refuses the last model.

        Aliases of the model go too; if it was the default, the first remaining loaded model
        (else the first remaining one) becomes the default.
        """
        with self._cond:
            mid = self.resolve(model_id)
            e = self._entries[mid]
            if len(self._entries) == 1:
                raise ValueError(f"Cannot remove the last model ({mid}); a Runner needs at least one")
            self._wait_idle(e)
            if self._entries.get(mid) is not e:
                raise ModelNotFoundError(f"Model {mid} not found")
            if len(self._entries) == 1:
                raise ValueError(f"Cannot remove the last model ({mid}); a Runner needs at least one")
            e.busy = True
            aborts = self._drain(e, timeout)
            box, e.host = [e.host], None
            e.status = UNLOADED
            del self._entries[mid]
            self._aliases = {a: t for a, t in self._aliases.items() if t != mid}
            if self._default == mid:
                loaded = [m for m, x in self._entries.items() if x.status == LOADED]
                self._default = (loaded or list(self._entries))[0]
        self._finish_shutdown(e, box, aborts, f"model {mid} was removed while the request was running")

    def shutdown_all(self) -> None:
        """Shut every host down at once (no draining: requests in flight are aborted). Idempotent.

        The table is closed afterwards: `acquire` raises RuntimeError.
        """
        with self._cond:
            self._closed = True
            work = []
            for e in self._entries.values():
                victims = list(e.leases)
                e.leases.clear()
                aborts = [cb for lease in victims for cb in lease._aborts]
                for lease in victims:
                    lease._drop()
                work.append((e.host, aborts))
                e.host, e.status = None, UNLOADED
            self._cond.notify_all()
        for host, aborts in work:
            _run_aborts(aborts, "the Runner was shut down while the request was running")
            if host is not None:
                host.shutdown()

    # ---- internals ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the Runner is shut down")

    def _wait_idle(self, e: _Entry) -> None:
        """Wait (lock held) until no reload/unload of `e` is in progress."""
        while e.status == RELOADING or e.busy:
            self._cond.wait()

    def _drain(self, e: _Entry, timeout: float | None) -> list[Callable[[str], None]]:
        """Wait (lock held) for `e`'s leases; on timeout force-release the rest, return their aborts."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        while e.leases:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self._cond.wait(remaining)
        victims = list(e.leases)
        e.leases.clear()
        aborts = [cb for lease in victims for cb in lease._aborts]
        for lease in victims:
            lease._drop()
        return aborts

    def _finish_shutdown(self, e: _Entry, box: list[Any], aborts: list[Callable[[str], None]], reason: str) -> None:
        """Abort stragglers, shut the host down and collect it (the caller holds no reference: `box`)."""
        try:
            _run_aborts(aborts, reason)
            aborts.clear()
            host = box.pop()
            if host is not None:
                host.shutdown()
            del host
            gc.collect()
        finally:
            with self._cond:
                e.busy = False
                self._cond.notify_all()


def _run_aborts(aborts: list[Callable[[str], None]], reason: str) -> None:
    for cb in aborts:
        try:
            cb(reason)
        except Exception:  # an abort callback must not stop the unload
            pass
