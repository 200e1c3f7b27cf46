"""Dynamic batcher: merges Solve requests of the same program and options into device batches.

Requests queue per key ``(program_id, SolveOptions)``. A key is *ready* when its queued instances reach
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
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .config import BatchingConfig
from .engine import BatchResult, SolveOptions
from .errors import Cancelled, DaemonError, DeadlineExpired, DeviceFailure, ResourceExhausted, Unavailable
from .logs import get_logger, log_event
from .registry import ProgramEntry

_log = get_logger("batcher")
DRAINING = "daemon: draining (shutting down), not accepting new work; retry on another daemon"

# (program, domains, priorities, options, deadline): the deadline is the latest of the batch's requests' own
# deadlines (None when one of them has none): past it nobody waits for the answer, so the device may abort.
RunBatch = Callable[
    [ProgramEntry, np.ndarray, "np.ndarray | None", SolveOptions, "float | None"], Awaitable[BatchResult]
]


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
class SolveAnswer:
    """One request's rows of its device batch, and where its time went."""

    result: BatchResult
    queue_s: float  # accepted -> handed to the device
    device_s: float  # the device batch it rode in
    total_s: float  # accepted -> answered
    device_batch_size: int
    merged_requests: int


@dataclass(frozen=True)
class BatchKey:
    program_id: str
    options: SolveOptions


@dataclass(eq=False)
class _Request:
    entry: ProgramEntry
    options: SolveOptions
    domains: np.ndarray
    priorities: np.ndarray | None
    future: asyncio.Future[SolveAnswer]
    accepted: float
    deadline: float | None
    state: str = "queued"  # queued -> device -> answered
    timer: asyncio.TimerHandle | None = None

    @property
    def size(self) -> int:
        return len(self.domains)


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


class Batcher:
    """``await solve(...)`` from request handlers; ``start()`` once, ``drain()`` on shutdown."""

    def __init__(
        self,
        config: BatchingConfig,
        run_batch: RunBatch,
        observer: BatchObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._run_batch = run_batch
        self._observer: BatchObserver = observer or _NullObserver()
        self._clock = clock
        self._queues: OrderedDict[BatchKey, deque[_Request]] = OrderedDict()  # rotation order
        self._instances: dict[BatchKey, int] = {}
        self._depth = 0
        self._in_flight: list[_Request] = []
        self._accepting = True
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

    async def solve(
        self,
        entry: ProgramEntry,
        domains: np.ndarray,
        priorities: np.ndarray | None,
        options: SolveOptions,
        deadline: float | None = None,
    ) -> SolveAnswer:
        """Queue one request and wait for its answer; ``deadline`` is on this batcher's clock."""
        return await self.submit(entry, domains, priorities, options, deadline)

    def submit(
        self,
        entry: ProgramEntry,
        domains: np.ndarray,
        priorities: np.ndarray | None,
        options: SolveOptions,
        deadline: float | None = None,
    ) -> asyncio.Future[SolveAnswer]:
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
        req = _Request(entry, options, domains, priorities, loop.create_future(), now, deadline)
        key = BatchKey(entry.program_id, options)
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

    def _on_future_done(self, req: _Request) -> None:
        """The caller cancelled (gRPC cancels the handler, which cancels this future): drop if still queued."""
        if req.state == "queued" and req.future.cancelled():
            expired = req.deadline is not None and self._clock() >= req.deadline
            self._drop(req, "expired" if expired else "cancelled", None)

    def _expire(self, req: _Request) -> None:
        if req.state == "queued":
            self._drop(req, "expired", DeadlineExpired("deadline: passed while the request waited for the device"))

    def _drop(self, req: _Request, reason: str, error: DaemonError | None) -> None:
        key = BatchKey(req.entry.program_id, req.options)
        self._dequeued(key, req)
        if reason == "expired":
            self.stats.dropped_expired += 1
        else:
            self.stats.dropped_cancelled += 1
        self._observer.dropped(reason)
        self._answer(req, reason, error=error or Cancelled("request: cancelled by the caller"))

    def _dequeued(self, key: BatchKey, req: _Request) -> None:
        """Bookkeeping for a request leaving the queue (it stays in the deque until popped, marked)."""
        req.state = "leaving"
        if req.timer is not None:
            req.timer.cancel()
        self._instances[key] -= req.size
        self._depth -= 1
        self._observer.set_queue_depth(self._depth)

    def _answer(
        self, req: _Request, outcome: str, answer: SolveAnswer | None = None, error: BaseException | None = None
    ) -> None:
        """The one place a request is answered; answering twice is a bug and raises."""
        if req.state == "answered":
            raise AssertionError("batcher: a request was answered twice")
        req.state = "answered"
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
        queued = sum(1 for q in self._queues.values() for r in q if r.state == "queued")
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

    def _oldest(self, key: BatchKey) -> _Request | None:
        q = self._queues[key]
        while q and q[0].state != "queued":
            q.popleft()
        return q[0] if q else None

    def _ready_at(self, key: BatchKey) -> float | None:
        oldest = self._oldest(key)
        if oldest is None:
            return None
        if self._draining or self._instances[key] >= self.config.max_batch:
            return float("-inf")
        return oldest.accepted + self.config.max_delay_us * 1e-6

    def _time_to_next_ready(self) -> float | None:
        times = [t for key in list(self._queues) if (t := self._ready_at(key)) is not None]
        return max(0.0, min(times) - self._clock()) if times else None

    def _next_batch(self) -> list[_Request]:
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

    def _take(self, key: BatchKey, now: float) -> list[_Request]:
        q = self._queues[key]
        batch: list[_Request] = []
        total = 0
        while q:
            req = q[0]
            if req.state != "queued":
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
            req.state = "device"
            batch.append(req)
            total += req.size
        return batch

    async def _run(self, batch: list[_Request]) -> None:
        first = batch[0]
        start = self._clock()
        for req in batch:
            self._observer.observe_queue(start - req.accepted)
        self._in_flight = batch
        domains = np.concatenate([r.domains for r in batch]) if len(batch) > 1 else first.domains
        total = len(domains)
        deadlines = [r.deadline for r in batch]
        deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        try:
            try:
                result = await self._run_batch(first.entry, domains, _merge_priorities(batch), first.options, deadline)
                if result.batch_size != total:
                    raise DeviceFailure(f"device: returned {result.batch_size} rows for a batch of {total}")
                error: DaemonError | None = None
            except DaemonError as e:
                error = e
            except Exception as e:
                log_event(_log, logging.ERROR, "batch_failed", error=repr(e), program_id=first.entry.program_id)
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
        offset = 0
        for req in batch:
            rows = slice(offset, offset + req.size)
            offset += req.size
            part = BatchResult(
                result.domains[rows], result.status[rows], result.nodes[rows], result.solutions[rows],
                result.sweeps[rows],
            )  # fmt: skip
            answer = SolveAnswer(part, start - req.accepted, device_s, end - req.accepted, total, len(batch))
            req.entry.solves += 1
            self._answer(req, "ok", answer)

    def _fail_batch(self, batch: list[_Request], error: BaseException) -> None:
        self._in_flight = []
        for req in batch:
            if req.state != "answered":
                self._answer(req, "error", error=error)

    def _fail_all(self, error: DaemonError) -> None:
        self._fail_batch(self._in_flight, error)
        for key, q in list(self._queues.items()):
            for req in q:
                if req.state == "queued":
                    self._dequeued(key, req)
                    self._answer(req, "error", error=error)
        self._queues.clear()
        self._instances.clear()

    def _refuse(self, reason: str) -> None:
        if self._accepting:
            self._accepting, self._refusal = False, reason

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


def _merge_priorities(batch: list[_Request]) -> np.ndarray | None:
    """Requests without priorities get all zeros, which branch exactly like no priorities (lowest value first)."""
    if all(r.priorities is None for r in batch):
        return None
    if len(batch) == 1:
        return batch[0].priorities
    parts = [
        r.priorities
        if r.priorities is not None
        else np.zeros((r.size, r.entry.num_vars, r.entry.domain_size), np.uint8)
        for r in batch
    ]
    return np.concatenate(parts)
