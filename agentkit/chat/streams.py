"""Chunk-stream wrappers shared by the Runner and the agent loop.

Scope: `ClosingStream` (a `with`-able iterator closed when dropped), `LeasedStream` (holds a model
lease until the stream ends, so `unload_model` waits for it; leaving a `for` loop over it early
cancels the request) and `aiter_stream` (a sync chunk
stream drained from asyncio without blocking the event loop).

Non-goals: producing chunks (`agentkit.chat.processing.ChatStream`, `agentkit.agent.loop`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from agentkit.api.responses import ChatCompletionChunkResponse

if TYPE_CHECKING:
    from agentkit.models.table import Lease

__all__ = ["ClosingStream", "LeasedStream", "aiter_stream"]


class ClosingStream:
    """Mixin for chunk iterators with a `close()`: `with` closes it, and so does dropping it."""

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class LeasedStream(ClosingStream):
    """A chat chunk stream that holds its model's lease until it is exhausted, fails or is closed.

    The lease keeps `unload_model` waiting while the stream is consumed. Once finished, the
    wrapper drops the inner stream so that no reference to the model outlives the request.
    Any chunk iterator with a `close()` works (a `ChatStream`, or a generator such as the agent
    loop's); a `ChatStream` is released as soon as its final chunk is read.
    """

    def __init__(self, stream: Iterator[ChatCompletionChunkResponse], lease: Lease) -> None:
        self._stream: Iterator[ChatCompletionChunkResponse] | None = stream
        self._lease: Lease | None = lease

    def __iter__(self) -> Iterator[ChatCompletionChunkResponse]:
        """A generator over the chunks that closes the stream when it is dropped or closed.

        `for chunk in stream: ... break` therefore cancels the request as soon as the loop ends,
        even while `stream` itself is still referenced (kept in a list, a traceback, ...): the
        loop holds the only reference to this generator and drops it on `break`. `next(stream)`
        still reads from the stream directly; iterating again after a `break` yields nothing.
        """
        return self._chunks()

    def _chunks(self) -> Iterator[ChatCompletionChunkResponse]:
        try:
            while True:
                try:
                    chunk = self.__next__()
                except StopIteration:
                    return
                yield chunk
        finally:
            self.close()

    def __next__(self) -> ChatCompletionChunkResponse:
        stream = self._stream
        if stream is None:
            raise StopIteration
        try:
            chunk = next(stream)
        except BaseException:
            self.close()
            raise
        if getattr(stream, "finished", False):  # the final chunk: free the model now, not at the next call
            self.close()
        return chunk

    def close(self) -> None:
        """Stop generating (if still running) and release the model."""
        stream, self._stream = self._stream, None
        lease, self._lease = self._lease, None
        try:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        finally:
            if lease is not None:
                lease.release()


async def aiter_stream(stream: Iterator[ChatCompletionChunkResponse]) -> AsyncIterator[ChatCompletionChunkResponse]:
    """Drain a sync chunk stream without blocking the event loop; closing the iterator cancels."""
    sentinel = object()
    try:
        while True:
            chunk = await asyncio.to_thread(next, stream, sentinel)
            if chunk is sentinel:
                return
            yield chunk
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
