"""Dynamic batcher, against a fake device: merging, limits, timing, fairness, drops, failures, drain, and the
exactly-one-answer invariant under random concurrent load."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fpgacsp_proto.isa import Mode, Neq, Program, make_program
from fpgacspd.batcher import Answer, Batcher, SolveAnswer
from fpgacspd.config import BatchingConfig
from fpgacspd.engine import BatchResult, SolveOptions
from fpgacspd.errors import DeadlineExpired, DeviceFailure, ResourceExhausted, Unavailable
from fpgacspd.registry import ProgramEntry
from fpgacspd.solve_batch import SolveBatch, merging

SOLVE = SolveOptions()
PROPAGATE = SolveOptions(Mode.PROPAGATE)


def entry(n: int = 3) -> ProgramEntry:
    p: Program = make_program(n, 8, [Neq(i, i + 1) for i in range(n - 1)])
    return ProgramEntry.of(p)


A, B = entry(3), entry(4)


def rows(entry: ProgramEntry, size: int, tag: int) -> np.ndarray:
    """Instances whose first word identifies the request (``tag``) and the row within it."""
    d = np.full((size, entry.num_vars), 0xFF, dtype=np.uint64)
    d[:, 0] = tag * 1000 + np.arange(size)
    return d


@dataclass
class FakeDevice:
    """Echoes domains, numbers rows within the device batch, records every batch; can block or fail."""

    batches: list[tuple[str, int, int, SolveOptions]] = field(default_factory=list)  # (program, rows, merged?)
    seen_tags: list[int] = field(default_factory=list)
    seen_rows: list[int] = field(default_factory=list)
    gate: asyncio.Event | None = None
    fail: Callable[[ProgramEntry], bool] = lambda e: False
    priorities: list[np.ndarray | None] = field(default_factory=list)
    delay_s: float = 0.0
    deadlines: list[float | None] = field(default_factory=list)

    async def __call__(self, batch: SolveBatch, deadline: float | None = None) -> BatchResult:
        entry, domains, priorities, options = batch.entry, batch.domains, batch.priorities, batch.options
        self.deadlines.append(deadline)
        self.batches.append((entry.program_id, len(domains), 0, options))
        self.seen_tags.extend(int(x) // 1000 for x in domains[:, 0])
        self.seen_rows.extend(int(x) for x in domains[:, 0])
        self.priorities.append(priorities)
        if self.gate is not None:
            await self.gate.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail(entry):
            raise RuntimeError("injected device fault")
        b = len(domains)
        return BatchResult(
            domains.copy(), np.ones(b, np.uint8), np.arange(b, dtype=np.int64), np.zeros(b, np.int64),
            np.full(b, b, dtype=np.int64),
        )  # fmt: skip


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout=30))


def check_answer(answer: SolveAnswer, e: ProgramEntry, size: int, tag: int) -> None:
    np.testing.assert_array_equal(answer.result.domains, rows(e, size, tag))
    assert answer.result.batch_size == size
    assert answer.queue_s >= 0 and answer.total_s >= answer.queue_s


def test_requests_of_one_program_merge_into_one_batch_and_get_their_own_rows() -> None:
    async def main() -> None:
        dev = FakeDevice()
        b = Batcher(BatchingConfig(max_batch=100, max_delay_us=1000), merging(dev))
        sizes = [1, 3, 2, 5, 1]
        futs = [b.submit(SolveBatch(A, rows(A, s, i), None, SOLVE)) for i, s in enumerate(sizes)]
        b.start()
        answers = await asyncio.gather(*futs)
        assert len(dev.batches) == 1 and dev.batches[0][1] == sum(sizes)
        offset = 0
        for i, (s, ans) in enumerate(zip(sizes, answers, strict=True)):
            check_answer(ans, A, s, i)
            np.testing.assert_array_equal(ans.result.nodes, np.arange(offset, offset + s))  # its slice, in order
            offset += s
            assert ans.device_batch_size == sum(sizes) and ans.merged_requests == len(sizes)
        b.check_invariant()
        assert b.stats.submitted == b.stats.answered == 5 and b.stats.batches == 1
        await b.drain()

    run(main)


def test_batches_respect_max_batch_and_never_split_a_request() -> None:
    async def main() -> None:
        dev = FakeDevice()
        b = Batcher(BatchingConfig(max_batch=7, max_delay_us=0), merging(dev))
        futs = [b.submit(SolveBatch(A, rows(A, 3, i), None, SOLVE)) for i in range(5)]
        big = b.submit(SolveBatch(A, rows(A, 10, 9), None, SOLVE))  # larger than max_batch: runs alone
        b.start()
        answers = await asyncio.gather(*futs, big)
        assert [n for _, n, _, _ in dev.batches] == [6, 6, 3, 10]
        for i, ans in enumerate(answers[:5]):
            check_answer(ans, A, 3, i)
        check_answer(answers[5], A, 10, 9)
        await b.drain()

    run(main)


def test_different_programs_and_options_are_never_merged() -> None:
    async def main() -> None:
        dev = FakeDevice()
        b = Batcher(BatchingConfig(max_batch=100, max_delay_us=0), merging(dev))
        futs = [
            b.submit(SolveBatch(A, rows(A, 1, 0), None, SOLVE)),
            b.submit(SolveBatch(B, rows(B, 1, 1), None, SOLVE)),
            b.submit(SolveBatch(A, rows(A, 1, 2), None, PROPAGATE)),
            b.submit(SolveBatch(A, rows(A, 1, 3), None, SOLVE)),
        ]
        b.start()
        answers = await asyncio.gather(*futs)
        keys = sorted((pid, n, opt.mode) for pid, n, _, opt in dev.batches)
        assert keys == sorted(
            [(A.program_id, 2, Mode.SOLVE), (B.program_id, 1, Mode.SOLVE), (A.program_id, 1, Mode.PROPAGATE)]
        )
        for i, ans in enumerate(answers):
            check_answer(ans, B if i == 1 else A, 1, i)
        await b.drain()

    run(main)


def test_round_robin_keeps_a_busy_program_from_starving_another() -> None:
    async def main() -> None:
        dev = FakeDevice()
        b = Batcher(BatchingConfig(max_batch=4, max_delay_us=0), merging(dev))
        flood = [b.submit(SolveBatch(A, rows(A, 1, i), None, SOLVE)) for i in range(40)]  # 10 full batches of A
        lone = b.submit(SolveBatch(B, rows(B, 1, 99), None, SOLVE))
        b.start()
        await asyncio.gather(*flood, lone)
        order = [pid for pid, *_ in dev.batches]
        assert order.index(B.program_id) <= 1, order  # B runs first or second, not after A's 10 batches
        await b.drain()

    run(main)


def test_a_lone_request_waits_max_delay_for_companions() -> None:
    async def main() -> None:
        dev = FakeDevice()
        b = Batcher(BatchingConfig(max_batch=8, max_delay_us=100_000), merging(dev))
        b.start()
        t0 = time.monotonic()
        ans = await b.submit(SolveBatch(A, rows(A, 1, 0), None, SOLVE))
        waited = time.monotonic() - t0
        assert 0.095 <= waited < 1.0
        assert ans.queue_s >= 0.095
        # a companion arriving during the wait rides in the same batch
        f1 = b.submit(SolveBatch(A, rows(A, 1, 1), None, SOLVE))
        await asyncio.sleep(0.02)
        f2 = b.submit(SolveBatch(A, rows(A, 1, 2), None, SOLVE))
        a1, a2 = await asyncio.gather(f1, f2)
        assert a1.merged_requests == a2.merged_requests == 2
        assert a1.queue_s >= 0.095 and 0.06 <= a2.queue_s < a1.queue_s  # delay counts from the OLDEST request
        await b.drain()

    run(main)


def test_a_full_batch_goes_without_waiting() -> None:
    async def main() -> None:
        dev = FakeDevice()
        b = Batcher(BatchingConfig(max_batch=4, max_delay_us=5_000_000), merging(dev))
        b.start()
        t0 = time.monotonic()
        await asyncio.gather(*[b.submit(SolveBatch(A, rows(A, 2, i), None, SOLVE)) for i in range(2)])
        assert time.monotonic() - t0 < 1.0
        assert dev.batches[0][1] == 4
        await b.close()

    run(main)


def test_full_queue_is_rejected_at_once() -> None:
    async def main() -> None:
        dev = FakeDevice(gate=asyncio.Event())
        b = Batcher(BatchingConfig(max_batch=1, max_delay_us=0, max_queue=2), merging(dev))
        b.start()
        first = b.submit(SolveBatch(A, rows(A, 1, 0), None, SOLVE))
        await asyncio.sleep(0.01)  # first is on the (blocked) device, not in the queue
        assert b.queue_depth == 0 and len(dev.batches) == 1
        queued = [b.submit(SolveBatch(A, rows(A, 1, i), None, SOLVE)) for i in (1, 2)]
        t0 = time.monotonic()
        with pytest.raises(ResourceExhausted, match=r"queue: 2 requests already waiting \(batching.max_queue = 2\)"):
            b.submit(SolveBatch(B, rows(B, 1, 3), None, SOLVE))
        assert time.monotonic() - t0 < 0.01
        assert b.stats.rejected_queue_full == 1
        assert dev.gate is not None
        dev.gate.set()
        await asyncio.gather(first, *queued)
        b.check_invariant()
        assert b.stats.submitted == b.stats.answered == 3  # the rejected one was never admitted
        await b.drain()

    run(main)


def test_expired_and_cancelled_requests_never_reach_the_device() -> None:
    async def main() -> None:
        dev = FakeDevice(gate=asyncio.Event())
        b = Batcher(BatchingConfig(max_batch=10, max_delay_us=0), merging(dev))
        b.start()
        blocker = b.submit(SolveBatch(A, rows(A, 1, 0), None, SOLVE))
        await asyncio.sleep(0.01)
        expiring = b.submit(SolveBatch(A, rows(A, 1, 1), None, SOLVE), deadline=time.monotonic() + 0.05)
        cancelled = b.submit(SolveBatch(A, rows(A, 1, 2), None, SOLVE))
        kept = b.submit(SolveBatch(A, rows(A, 1, 3), None, SOLVE))
        cancelled.cancel()
        with pytest.raises(DeadlineExpired, match="deadline: passed while the request waited"):
            await expiring  # answered at its deadline although the device is still busy
        assert b.queue_depth == 1
        assert dev.gate is not None
        dev.gate.set()
        await blocker
        ans = await kept
        assert ans.merged_requests == 1
        assert dev.seen_tags == [0, 3]
        assert (b.stats.dropped_expired, b.stats.dropped_cancelled) == (1, 1)
        b.check_invariant()
        assert b.stats.submitted == b.stats.answered == 4
        await b.drain()

    run(main)


def test_a_deadline_already_passed_is_refused_at_submit() -> None:
    async def main() -> None:
        b = Batcher(BatchingConfig(), merging(FakeDevice()))
        with pytest.raises(DeadlineExpired):
            b.submit(SolveBatch(A, rows(A, 1, 0), None, SOLVE), deadline=time.monotonic() - 1)
        assert b.stats.submitted == 0 and b.stats.dropped_expired == 1

    run(main)


def test_a_failing_batch_fails_exactly_its_requests() -> None:
    async def main() -> None:
        dev = FakeDevice(fail=lambda e: e is B)
        b = Batcher(BatchingConfig(max_batch=100, max_delay_us=1000), merging(dev))
        fa = [b.submit(SolveBatch(A, rows(A, 1, i), None, SOLVE)) for i in range(3)]
        fb = [b.submit(SolveBatch(B, rows(B, 1, 10 + i), None, SOLVE)) for i in range(3)]
        b.start()
        results = await asyncio.gather(*fa, *fb, return_exceptions=True)
        for i, r in enumerate(results[:3]):
            assert isinstance(r, Answer)
            check_answer(r, A, 1, i)
        for r in results[3:]:
            assert isinstance(r, DeviceFailure) and "injected device fault" in r.message
        assert b.stats.failed_batches == 1
        b.check_invariant()
        await b.drain()

    run(main)


def test_requests_without_priorities_get_zeros_when_merged_with_ones_that_have_them() -> None:
    async def main() -> None:
        dev = FakeDevice()
        b = Batcher(BatchingConfig(max_batch=100, max_delay_us=1000), merging(dev))
        prio = np.full((2, A.num_vars, A.domain_size), 7, dtype=np.uint8)
        futs = [
            b.submit(SolveBatch(A, rows(A, 1, 0), None, SOLVE)),
            b.submit(SolveBatch(A, rows(A, 2, 1), prio, SOLVE)),
        ]
        futs.append(b.submit(SolveBatch(A, rows(A, 1, 2), None, SOLVE)))
        b.start()
        await asyncio.gather(*futs)
        merged = dev.priorities[0]
        assert merged is not None and merged.shape == (4, A.num_vars, A.domain_size)
        assert (merged[0] == 0).all() and (merged[1:3] == 7).all() and (merged[3] == 0).all()
        none = b.submit(SolveBatch(A, rows(A, 1, 3), None, SOLVE))
        await none
        assert dev.priorities[-1] is None
        await b.drain()

    run(main)


def test_drain_finishes_queued_work_at_once_and_refuses_new_work() -> None:
    async def main() -> None:
        dev = FakeDevice(delay_s=0.01)
        b = Batcher(BatchingConfig(max_batch=2, max_delay_us=10_000_000), merging(dev))  # would wait 10 s
        b.start()
        futs = [b.submit(SolveBatch(A, rows(A, 1, i), None, SOLVE)) for i in range(5)]
        await asyncio.sleep(0)
        t0 = time.monotonic()
        await b.drain()
        assert time.monotonic() - t0 < 2.0
        for i, f in enumerate(futs):
            check_answer(f.result(), A, 1, i)
        with pytest.raises(Unavailable, match="draining"):
            b.submit(SolveBatch(A, rows(A, 1, 9), None, SOLVE))
        b.check_invariant()

    run(main)


def test_close_answers_everything_left_with_unavailable() -> None:
    async def main() -> None:
        dev = FakeDevice(gate=asyncio.Event())
        b = Batcher(BatchingConfig(max_batch=1, max_delay_us=0), merging(dev))
        b.start()
        futs = [b.submit(SolveBatch(A, rows(A, 1, i), None, SOLVE)) for i in range(3)]
        await asyncio.sleep(0.01)  # the first is on the device, two are queued
        await b.close()
        for f in futs:
            assert isinstance(f.exception(), Unavailable)
        b.check_invariant()
        assert b.stats.submitted == b.stats.answered == 3

    run(main)


@pytest.mark.parametrize("seed", range(5))
def test_exactly_one_answer_per_request_under_random_concurrent_load(seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> None:
        dev = FakeDevice(fail=lambda e: rng.random() < 0.1)
        cfg = BatchingConfig(max_batch=rng.choice([1, 4, 16]), max_delay_us=rng.choice([0, 200, 2000]), max_queue=40)
        b = Batcher(cfg, merging(dev))
        b.start()
        outcomes: dict[str, int] = {}

        async def client(i: int) -> None:
            for j in range(10):
                e = rng.choice([A, B])
                size = rng.randint(1, 6)
                tag = i * 100 + j
                deadline = time.monotonic() + rng.choice([0.0005, 0.01, 10.0])
                try:
                    fut = b.submit(SolveBatch(e, rows(e, size, tag), None, rng.choice([SOLVE, PROPAGATE])), deadline)
                except ResourceExhausted:
                    outcomes["rejected"] = outcomes.get("rejected", 0) + 1
                    continue
                except DeadlineExpired:
                    outcomes["late"] = outcomes.get("late", 0) + 1
                    continue
                if rng.random() < 0.1:
                    fut.cancel()
                try:
                    ans = await fut
                except asyncio.CancelledError:
                    outcomes["cancelled"] = outcomes.get("cancelled", 0) + 1
                except (DeadlineExpired, DeviceFailure) as err:
                    outcomes[type(err).__name__] = outcomes.get(type(err).__name__, 0) + 1
                else:
                    check_answer(ans, e, size, tag)
                    outcomes["ok"] = outcomes.get("ok", 0) + 1
                await asyncio.sleep(rng.random() * 0.002)

        await asyncio.gather(*(client(i) for i in range(30)))
        await b.drain()
        b.check_invariant()
        s = b.stats
        assert s.submitted == s.answered
        assert s.submitted == sum(v for k, v in outcomes.items() if k not in ("rejected", "late"))
        assert outcomes.get("ok", 0) > 0
        assert sum(s.answers_by_outcome.values()) == s.answered
        # every instance the device saw belongs to a request, and no request rode twice
        assert len(dev.seen_rows) == len(set(dev.seen_rows)) == sum(n for _, n, _, _ in dev.batches)

    run(main)
