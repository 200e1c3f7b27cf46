"""One ``SolveStream`` call: many tagged Solve items over one gRPC call, each answered once, as it finishes.

A unary call's own cost (HTTP/2 stream, headers, the interceptors, a handler task) is most of a batch-1 Solve's
(bench/results/serve.md); a stream pays it once. The items here are ordinary Solves: :func:`serve_stream` knows
nothing of what an item is. It reads items, runs ``answer(item)`` for each as its own task (so items merge
into device batches like concurrent unary calls do), and yields each answer the moment it is ready. ``answer``
must never raise for an item's own failure: it turns it into that item's error answer (the servicer's error
boundary, ``service.SolverServicer``), so one bad item never ends the stream.

Exactly one answer per item read:
- the client half-closes: every item read is answered, then the call ends OK;
- the daemon drains (``refusing`` set): no more items are read, those read are answered (queued work still
  runs; a later item would have been refused UNAVAILABLE anyway), then the call ends UNAVAILABLE, which the
  client library takes as "send the unread items elsewhere or later";
- the call is cancelled or its deadline passes: gRPC ends it; the pending items' tasks are cancelled, which
  drops them before they reach the device, as for a cancelled unary call.
At most ``max_pending`` items are read but unanswered; beyond that the call stops reading and HTTP/2 flow
control holds the client back, so a client that never reads its answers cannot grow the daemon's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 (an item, as in the batcher)
A = TypeVar("A")

MAX_PENDING = 1024  # items read and not yet answered, per stream


class StreamEnd(enum.Enum):
    """How a stream's reading ended."""

    HALF_CLOSED = "half_closed"  # the client sent its last item: answer the rest, end OK
    REFUSING = "refusing"  # the daemon stopped accepting work: answer the rest, end UNAVAILABLE


class _Reader(Generic[I, A]):
    def __init__(self, answer: Callable[[I], Awaitable[A]], max_pending: int) -> None:
        self.answer = answer
        self.answers: asyncio.Queue[A | StreamEnd] = asyncio.Queue()
        self.slots = asyncio.Semaphore(max_pending)
        self.tasks: set[asyncio.Task[None]] = set()
        self.pending = 0  # items read, answer not yet yielded

    async def read(self, items: AsyncIterable[I]) -> None:
        iterator = aiter(items)
        while True:
            await self.slots.acquire()  # a free slot before the next item is even read
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                return
            self.pending += 1
            task = asyncio.create_task(self._answer(item))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _answer(self, item: I) -> None:
        self.answers.put_nowait(await self.answer(item))


async def serve_stream(
    items: AsyncIterable[I],
    answer: Callable[[I], Awaitable[A]],
    refusing: asyncio.Event,
    max_pending: int = MAX_PENDING,
) -> AsyncIterator[A | StreamEnd]:
    """Each item's answer as it is ready, then how the stream ended (:class:`StreamEnd`, always last)."""
    reader = _Reader(answer, max_pending)
    reading = asyncio.create_task(reader.read(items))
    refused = asyncio.create_task(refusing.wait())
    reading.add_done_callback(lambda _: reader.answers.put_nowait(StreamEnd.HALF_CLOSED))
    refused.add_done_callback(lambda _: reader.answers.put_nowait(StreamEnd.REFUSING))
    end: StreamEnd | None = None
    try:
        while end is None or reader.pending:
            got = await reader.answers.get()
            if isinstance(got, StreamEnd):
                if end is None:
                    end = got
                    reading.cancel()  # refusing: read no more (a no-op once the client half-closed)
                    refused.cancel()
                if reading.done() and not reading.cancelled() and reading.exception() is not None:
                    raise reading.exception()  # type: ignore[misc]  # the request stream itself failed
                continue
            reader.pending -= 1
            reader.slots.release()
            yield got
        yield end
    finally:
        for task in (reading, refused, *reader.tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(reading, refused, *reader.tasks, return_exceptions=True)
