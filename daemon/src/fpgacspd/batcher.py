"""Dynamic batcher: merges requests of the same key into device batches, knowing nothing else about them.

An item only has a ``key`` (items with equal keys may share a batch) and a ``size`` (its instances); the
daemon's are :class:`fpgacspd.solve_batch.SolveBatch`, keyed by ``(program_id, SolveOptions)``, and merging and
splitting them is theirs. The run function gets a list of items and returns one result per item, in order
(the batcher checks the count), as Ray Serve's batching does.

Requests queue per key. A key is *ready* when its queued instances reach
``max_batch`` or its oldest live request has waited ``max_delay_us`` (or the batcher is draining). One loop
serves ready keys round-robin (fair across programs) and keeps ONE batch on the device at a time, because
the device is serial: while it works, the next batch fills up. Requests are never split; a request larger
than ``max_batch`` runs alone.

Admission is immediate: a full queue (``max_queue`` requests) is ``ResourceExhausted`` at once, and a
draining batcher answers ``Unavailable``. A request whose caller cancelled, or whose deadline passed,
before it reaches the device is dropped. Every request gets exactly one answer (a result, an error, or a
drop), counted and checked by :meth:`Batcher.check_invariant`; a failing batch fails exactly its requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .config import BatchingConfig
from .engine import BatchResult
from .errors import Cancelled, DaemonError, DeadlineExpired, DeviceFailure, ResourceExhausted, Unavailable
from .logs import get_logger, log_event

_log = get_logger("batcher")
DRAINING = "daemon: draining (shutting down), not accepting new work; retry on another daemon"


class BatchItem(Protocol):
    """What the batcher needs of a request."""

    @property
    def key(self) -> Hashable: ...

    @property
    def size(self) -> int: ...


I = TypeVar("I", bound=BatchItem)  # noqa: E741 (the item type, as in Batcher[I, R])
R = TypeVar("R")

# (items, deadline) -> one result per item. The deadline is the latest of the items' own deadlines (None when one
# of them has none): past it nobody waits for the answer, so the device may abort.
RunBatch = Callable[[list[I], "float | None"], Awaitable[Sequence[R]]]


class BatchObserver(Protocol):
    """What the batcher reports (implemented by :class:`fpgacspd.metrics.Metrics`)."""

    def observe_batch(self, instances: int, requests: int, device_s: float) -> None: ...

    def observe_queue(self, queue_s: float) -> None: ...

    def set_queue_depth(self, depth: int) -> None: ...

    def dropped(self, reason: str) -> None: ...


class _NullObserver:
    def observe_batch(self, instances: int, requests: int, device_s: float) -> None:
        pass

    def observe_queue(self, queue_s: float) -> None:
        pass

    def set_queue_depth(self, depth: int) -> None:
        pass

    def dropped(self, reason: str) -> None:
        pass


@dataclass(frozen=True)
class Answer(Generic[R]):
    """One request's result from its device batch, and where its time went."""

    result: R
    queue_s: float  # accepted -> handed to the device
    device_s: float  # the device batch it rode in
    total_s: float  # accepted -> answered
    device_batch_size: int
    merged_requests: int


SolveAnswer = Answer[BatchResult]


class RequestState(enum.Enum):
    QUEUED = "queued"
    LEAVING = "leaving"  # taken off the queue (dropped or batched), still in its deque until popped
    DEVICE = "device"
    ANSWERED = "answered"


@dataclass(eq=False)
class _Request(Generic[I, R]):
    item: I
    future: asyncio.Future[Answer[R]]
    accepted: float
    deadline: float | None
    size: int
    state: RequestState = RequestState.QUEUED
    timer: asyncio.TimerHandle | None = None


@dataclass
class BatcherStats:
    submitted: int = 0
    answered: int = 0
    batches: int = 0
    instances: int = 0
    merged_requests: int = 0
    dropped_expired: int = 0
    dropped_cancelled: int = 0
    rejected_queue_full: int = 0
    failed_batches: int = 0
    answers_by_outcome: dict[str, int] = field(default_factory=dict)


class Batcher(Generic[I, R]):
    """``await solve(item)`` from request handlers; ``start()`` once, ``drain()`` on shutdown."""

    def __init__(
        self,
        config: BatchingConfig,
        run_batch: RunBatch[I, R],
        observer: BatchObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._run_batch = run_batch
        self._observer: BatchObserver = observer or _NullObserver()
        self._clock = clock
        self._queues: OrderedDict[Hashable, deque[_Request[I, R]]] = OrderedDict()  # rotation order
        self._instances: dict[Hashable, int] = {}
        self._depth = 0
        self._in_flight: list[_Request[I, R]] = []
        self._accepting = True
        self.refusing = asyncio.Event()  # set once new work is refused for good (drain, close): streams end
        self._refusal = ""  # why new work is refused, once it is
        self._draining = False
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stats = BatcherStats()

    # -- admission -------------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the device (not counting the batch on it)."""
        return self._depth

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def refusal(self) -> str:
        """Why new work is refused (empty while accepting)."""
        return self._refusal

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="fpgacsp-batcher")

    async def solve(self, item: I, deadline: float | None = None) -> Answer[R]:
        """Queue one request and wait for its answer; ``deadline`` is on this batcher's clock."""
        return await self.submit(item, deadline)

    def submit(self, item: I, deadline: float | None = None) -> asyncio.Future[Answer[R]]:
        """Admit a request at once or raise; cancelling the returned future drops the request if still queued."""
        if not self._accepting:
            raise Unavailable(self._refusal)
        if self._depth >= self.config.max_queue:
            self.stats.rejected_queue_full += 1
            self._observer.dropped("queue_full")
            raise ResourceExhausted(
                f"queue: {self._depth} requests already waiting (batching.max_queue = {self.config.max_queue}); "
                "retry later"
            )
        now = self._clock()
        if deadline is not None and deadline <= now:
            self.stats.dropped_expired += 1
            self._observer.dropped("expired")
            raise DeadlineExpired("deadline: already passed when the request arrived")
        loop = asyncio.get_running_loop()
        req: _Request[I, R] = _Request(item, loop.create_future(), now, deadline, item.size)
        key = item.key
        self._queues.setdefault(key, deque()).append(req)
        self._instances[key] = self._instances.get(key, 0) + req.size
        self._depth += 1
        self.stats.submitted += 1
        self._observer.set_queue_depth(self._depth)
        req.future.add_done_callback(lambda _f, r=req: self._on_future_done(r))  # type: ignore[misc]
        if deadline is not None:
            req.timer = loop.call_later(deadline - now, self._expire, req)
        self._wakeup.set()
        return req.future

    # -- drops -----------------------------------------------------------------------------------------

    def _on_future_done(self, req: _Request[I, R]) -> None:
        """The caller cancelled (gRPC cancels the handler, which cancels this future): drop if still queued."""
        if req.state == RequestState.QUEUED and req.future.cancelled():
            expired = req.deadline is not None and self._clock() >= req.deadline
            self._drop(req, "expired" if expired else "cancelled", None)

    def _expire(self, req: _Request[I, R]) -> None:
        if req.state == RequestState.QUEUED:
            self._drop(req, "expired", DeadlineExpired("deadline: passed while the request waited for the device"))

    def _drop(self, req: _Request[I, R], reason: str, error: DaemonError | None) -> None:
        self._dequeued(req.item.key, req)
        if reason == "expired":
            self.stats.dropped_expired += 1
        else:
            self.stats.dropped_cancelled += 1
        self._observer.dropped(reason)
        self._answer(req, reason, error=error or Cancelled("request: cancelled by the caller"))

    def _dequeued(self, key: Hashable, req: _Request[I, R]) -> None:
        """Bookkeeping for a request leaving the queue (it stays in the deque until popped, marked)."""
        req.state = RequestState.LEAVING
        if req.timer is not None:
            req.timer.cancel()
        self._instances[key] -= req.size
        self._depth -= 1
        self._observer.set_queue_depth(self._depth)

    def _answer(
        self, req: _Request[I, R], outcome: str, answer: Answer[R] | None = None, error: BaseException | None = None
    ) -> None:
        """The one place a request is answered; answering twice is a bug and raises."""
        if req.state == RequestState.ANSWERED:
            raise AssertionError("batcher: a request was answered twice")
        req.state = RequestState.ANSWERED
        self.stats.answered += 1
        self.stats.answers_by_outcome[outcome] = self.stats.answers_by_outcome.get(outcome, 0) + 1
        if req.future.done():  # cancelled by the caller: nobody to tell
            return
        if error is not None:
            req.future.set_exception(error)
        else:
            req.future.set_result(answer)  # type: ignore[arg-type]

    def check_invariant(self) -> None:
        """Every submitted request is queued, on the device, or answered exactly once."""
        queued = sum(1 for q in self._queues.values() for r in q if r.state == RequestState.QUEUED)
        s = self.stats
        if s.submitted != s.answered + queued + len(self._in_flight) or queued != self._depth:
            raise AssertionError(
                f"batcher: {s.submitted} submitted != {s.answered} answered + {queued} queued "
                f"+ {len(self._in_flight)} on the device (depth {self._depth})"
            )

    # -- the loop --------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                batch = self._next_batch()
                if batch:
                    await self._run(batch)
                    continue
                if self._draining and self._depth == 0:
                    return
                self._wakeup.clear()
                delay = self._time_to_next_ready()
                timer = loop.call_later(delay, self._wakeup.set) if delay is not None else None
                await self._wakeup.wait()
                if timer is not None:
                    timer.cancel()
        except asyncio.CancelledError:
            self._fail_all(Unavailable("daemon: shut down before the request reached the device; retry"))
            raise
        except BaseException:
            log_event(_log, logging.CRITICAL, "batcher_crashed", exc_info=True)
            self._refuse("batcher: stopped after an internal error; retry on another daemon")
            self._fail_all(DeviceFailure("batcher: internal error; the request was not run"))
            raise

    def _oldest(self, key: Hashable) -> _Request[I, R] | None:
        q = self._queues[key]
        while q and q[0].state != RequestState.QUEUED:
            q.popleft()
        return q[0] if q else None

    def _ready_at(self, key: Hashable) -> float | None:
        oldest = self._oldest(key)
        if oldest is None:
            return None
        if self._draining or self._instances[key] >= self.config.max_batch:
            return float("-inf")
        return oldest.accepted + self.config.max_delay_us * 1e-6

    def _time_to_next_ready(self) -> float | None:
        times = [t for key in list(self._queues) if (t := self._ready_at(key)) is not None]
        return max(0.0, min(times) - self._clock()) if times else None

    def _next_batch(self) -> list[_Request[I, R]]:
        """Pop the first ready key's batch in rotation order; that key goes to the back."""
        now = self._clock()
        for key in list(self._queues):
            ready = self._ready_at(key)
            if ready is None:
                del self._queues[key]
                del self._instances[key]
                continue
            if ready > now:
                continue
            batch = self._take(key, now)
            if self._oldest(key) is None:
                del self._queues[key]
                del self._instances[key]
            else:
                self._queues.move_to_end(key)
            if batch:
                return batch
        return []

    def _take(self, key: Hashable, now: float) -> list[_Request[I, R]]:
        q = self._queues[key]
        batch: list[_Request[I, R]] = []
        total = 0
        while q:
            req = q[0]
            if req.state != RequestState.QUEUED:
                q.popleft()
                continue
            if req.deadline is not None and req.deadline <= now:
                q.popleft()
                self._drop(req, "expired", DeadlineExpired("deadline: passed while the request waited for the device"))
                continue
            if batch and total + req.size > self.config.max_batch:
                break
            q.popleft()
            self._dequeued(key, req)
            req.state = RequestState.DEVICE
            batch.append(req)
            total += req.size
        return batch

    async def _run(self, batch: list[_Request[I, R]]) -> None:
        start = self._clock()
        for req in batch:
            self._observer.observe_queue(start - req.accepted)
        self._in_flight = batch
        total = sum(r.size for r in batch)
        deadlines = [r.deadline for r in batch]
        deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        results: Sequence[R] = ()
        try:
            try:
                results = await self._run_batch([r.item for r in batch], deadline)
                if len(results) != len(batch):
                    raise DeviceFailure(f"device: {len(results)} results for a batch of {len(batch)} requests")
                error: DaemonError | None = None
            except DaemonError as e:
                error = e
            except Exception as e:
                log_event(_log, logging.ERROR, "batch_failed", error=repr(e), key=repr(batch[0].item.key))
                error = DeviceFailure(f"device: batch failed ({e})")
        except BaseException:
            self._fail_batch(batch, Unavailable("daemon: shut down while the request was on the device; retry"))
            raise
        end = self._clock()
        device_s = end - start
        self._in_flight = []
        self.stats.batches += 1
        self.stats.instances += total
        self.stats.merged_requests += len(batch)
        self._observer.observe_batch(total, len(batch), device_s)
        if error is not None:
            self.stats.failed_batches += 1
            self._fail_batch(batch, error)
            return
        for req, result in zip(batch, results, strict=True):
            answer = Answer(result, start - req.accepted, device_s, end - req.accepted, total, len(batch))
            self._answer(req, "ok", answer)

    def _fail_batch(self, batch: list[_Request[I, R]], error: BaseException) -> None:
        self._in_flight = []
        for req in batch:
            if req.state != RequestState.ANSWERED:
                self._answer(req, "error", error=error)

    def _fail_all(self, error: DaemonError) -> None:
        self._fail_batch(self._in_flight, error)
        for key, q in list(self._queues.items()):
            for req in q:
                if req.state == RequestState.QUEUED:
                    self._dequeued(key, req)
                    self._answer(req, "error", error=error)
        self._queues.clear()
        self._instances.clear()

    def _refuse(self, reason: str) -> None:
        if self._accepting:
            self._accepting, self._refusal = False, reason
            self.refusing.set()

    # -- shutdown --------------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Refuse new work, run everything queued and in flight, then stop the loop."""
        self._refuse(DRAINING)
        self._draining = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def close(self) -> None:
        """Stop now: whatever is still queued or on the device is answered ``Unavailable``."""
        self._refuse(DRAINING)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_all(Unavailable("daemon: shut down before the request reached the device; retry"))
