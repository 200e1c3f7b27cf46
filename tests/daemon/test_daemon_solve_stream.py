"""``serve_stream``, plain asyncio: every item read gets exactly one answer, as it finishes; the stream ends
after the last one, OK on a half-close and REFUSING once the daemon stops accepting work; reading is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest
from fpgacspd.solve_stream import StreamEnd, serve_stream

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10))


class Items:
    """A request stream the test feeds by hand; ``close()`` is the client's half-close."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[int | None] = asyncio.Queue()
        self.read = 0

    def send(self, *items: int) -> None:
        for i in items:
            self.queue.put_nowait(i)

    def close(self) -> None:
        self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[int]:
        while (item := await self.queue.get()) is not None:
            self.read += 1
            yield item


async def first_of(stream: AsyncIterator[T]) -> T:
    return await anext(stream)


async def collect(stream: AsyncIterator[object]) -> list[object]:
    return [got async for got in stream]


def delayed(delays: dict[int, float]) -> Callable[[int], Awaitable[str]]:
    async def answer(item: int) -> str:
        await asyncio.sleep(delays.get(item, 0))
        return f"answer {item}"

    return answer


def test_every_item_is_answered_once_as_it_finishes_then_the_stream_ends_half_closed() -> None:
    async def main() -> list[object]:
        items = Items()
        items.send(1, 2, 3)
        items.close()
        return await collect(serve_stream(items, delayed({1: 0.05, 2: 0.0, 3: 0.02}), asyncio.Event()))

    assert run(main()) == ["answer 2", "answer 3", "answer 1", StreamEnd.HALF_CLOSED]


def test_a_half_closed_stream_still_answers_the_items_in_flight() -> None:
    async def main() -> list[object]:
        items = Items()
        items.send(1)
        items.close()  # before item 1's answer is ready
        return await collect(serve_stream(items, delayed({1: 0.05}), asyncio.Event()))

    assert run(main()) == ["answer 1", StreamEnd.HALF_CLOSED]


def test_refusing_stops_reading_answers_what_was_read_and_ends_refusing() -> None:
    async def scenario() -> tuple[list[str | StreamEnd], int]:
        items, refusing = Items(), asyncio.Event()
        items.send(1, 2)
        stream = serve_stream(items, delayed({1: 0.05, 2: 0.05}), refusing)
        first = asyncio.create_task(first_of(stream))
        await asyncio.sleep(0.01)
        refusing.set()
        await asyncio.sleep(0.01)
        items.send(3)  # sent after the drain began: never read
        got = [await first, *[a async for a in stream]]
        return got, items.read

    got, read = run(scenario())
    assert sorted(got[:2]) == ["answer 1", "answer 2"]  # type: ignore[type-var]
    assert got[2:] == [StreamEnd.REFUSING]
    assert read == 2


def test_at_most_max_pending_items_are_read_before_an_answer_is_taken() -> None:
    async def main() -> tuple[int, list[int | StreamEnd]]:
        items, release = Items(), asyncio.Event()

        async def answer(item: int) -> int:
            await release.wait()
            return item

        items.send(*range(10))
        items.close()
        stream = serve_stream(items, answer, asyncio.Event(), max_pending=3)
        first = asyncio.create_task(first_of(stream))
        await asyncio.sleep(0.05)
        read_while_blocked = items.read
        release.set()
        rest = [await first, *[a async for a in stream]]
        return read_while_blocked, rest

    read_while_blocked, answers = run(main())
    assert read_while_blocked == 3
    assert sorted(a for a in answers if isinstance(a, int)) == list(range(10))
    assert answers[-1] is StreamEnd.HALF_CLOSED


def test_closing_the_stream_cancels_the_items_in_flight() -> None:
    async def main() -> list[str]:
        items, cancelled = Items(), []

        async def answer(item: int) -> int:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(f"item {item}")
                raise
            return item

        items.send(1, 2)
        stream = serve_stream(items, answer, asyncio.Event())
        first = asyncio.create_task(first_of(stream))
        await asyncio.sleep(0.02)
        first.cancel()  # gRPC cancels the handler: the client went away or its deadline passed
        with pytest.raises(asyncio.CancelledError):
            await first
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator's
        return sorted(cancelled)

    assert run(main()) == ["item 1", "item 2"]


def test_a_failing_request_stream_ends_the_call_with_its_error() -> None:
    async def main() -> list[object]:
        async def broken() -> AsyncIterator[int]:
            yield 1
            raise RuntimeError("the request stream broke")

        return await collect(serve_stream(broken(), delayed({}), asyncio.Event()))

    with pytest.raises(RuntimeError, match="the request stream broke"):
        run(main())
