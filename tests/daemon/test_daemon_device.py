"""Device layer: the register device (driver + simulated card) agrees with the engine, the known-answer self-test
passes on it and fails on a wrong device, and the worker runs everything on one thread, fails only the batch a
lost device fails, and tracks state."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from fpgacsp_proto.encoding import program_id
from fpgacsp_proto.isa import Program
from fpgacspd.config import DeviceConfig
from fpgacspd.device import DeviceInfo, DeviceState, DeviceWorker, RegisterDevice, make_device
from fpgacspd.engine import BatchResult, FastEngine, SolveOptions
from fpgacspd.errors import DeviceFailure, DeviceLost, Unavailable
from fpgacspd.selftest import SelfTestReport, known_answers, run_self_test
from hypothesis import given, settings
from strategies import BatchCase, batch_cases, solve_options


def sim_device() -> RegisterDevice:
    return make_device(DeviceConfig(threads=1))


@pytest.fixture(scope="module")
def device() -> Iterator[RegisterDevice]:
    dev = sim_device()
    yield dev
    dev.close()


def test_self_test_passes_on_the_simulated_card(device: RegisterDevice) -> None:
    report = device.self_test()
    assert report.passed, report.cases
    assert {c.name for c in report.cases} == {ka.name for ka in known_answers()}
    assert len(report.cases) >= 3 and all(c.detail == "ok" for c in report.cases)
    assert device.status().programs_loaded == 0  # self-test programs are unloaded afterwards


def test_known_answers_cover_both_modes_and_every_outcome() -> None:
    kas = known_answers()
    assert {ka.options.mode for ka in kas} == {1, 2}
    assert {ka.status for ka in kas} >= {1, 2, 4}  # SOLVED, FIXPOINT, UNSAT
    kinds = {int(c.kind) for ka in kas for c in ka.program.constraints}
    assert kinds == {1, 2, 3, 4}  # ALLDIFF, NEQ, TABLE2, LINEAR
    assert any(ka.solutions > 1 for ka in kas)


class WrongDevice(RegisterDevice):
    """Off by one node: the self-test must notice."""

    def run_batch(
        self, program_id: str, program: Program, domains: np.ndarray, priorities: np.ndarray | None,
        options: SolveOptions, deadline: float | None = None,
    ) -> BatchResult:  # fmt: skip
        res = super().run_batch(program_id, program, domains, priorities, options, deadline)
        return replace(res, nodes=res.nodes + 1)


def test_self_test_fails_on_a_wrong_device() -> None:
    from fpgacspd.device.sim import SimParams, SimTransport

    dev = WrongDevice(SimTransport(SimParams(threads=1)))
    try:
        report = run_self_test(dev)
    finally:
        dev.close()
    assert not report.passed
    assert all(
        not c.passed and "expected (domains, status, nodes, solutions, sweeps)" in c.detail for c in report.cases
    )


@settings(max_examples=30)
@given(case=batch_cases(max_batch=8), options=solve_options(max_node_limit=1000))
def test_register_device_equals_the_engine_and_zero_priorities_equal_none(
    device: RegisterDevice, case: BatchCase, options: SolveOptions
) -> None:
    dev = device
    if True:
        pid = program_id(case.program)
        got = dev.run_batch(pid, case.program, case.domains, case.priorities, options)
        want = FastEngine(threads=1).solve(case.program, case.domains, case.priorities, options)
        assert got.equals(want)
        zeros = np.zeros((len(case.domains), case.program.num_vars, case.program.domain_size), np.uint8)
        assert dev.run_batch(pid, case.program, case.domains, zeros, options).equals(
            dev.run_batch(pid, case.program, case.domains, None, options)
        )


def test_register_device_counts_and_loads_on_demand(device: RegisterDevice) -> None:
    ka = known_answers()[1]
    pid = program_id(ka.program)
    before = device.status()
    res = device.run_batch(pid, ka.program, np.array([ka.domains] * 3, dtype=np.uint64), None, ka.options)
    after = device.status()
    assert after.batches == before.batches + 1 and after.instances == before.instances + 3
    assert after.nodes == before.nodes + 3 * ka.nodes and after.sweeps == before.sweeps + 3 * ka.sweeps
    assert after.programs_loaded == before.programs_loaded + 1
    assert int(res.solutions[0]) == ka.solutions
    device.unload_program(pid)
    device.unload_program(pid)  # unknown ids are ignored
    assert device.status().programs_loaded == before.programs_loaded
    device.reset()
    assert device.status().resets == before.resets + 1


@dataclass
class FlakyDevice:
    """Fails the first ``failures`` batches (as a lost device when ``lost``); records which thread ran each call."""

    failures: int = 0
    lost: bool = False
    calls: list[str] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    by_thread: list[tuple[str, str]] = field(default_factory=list)  # (call, thread), in call order
    resets: int = 0
    backend: str = "fake"
    inner: RegisterDevice = field(default_factory=sim_device)

    def _note(self, what: str) -> None:
        self.calls.append(what)
        self.threads.add(threading.current_thread().name)
        self.by_thread.append((what, threading.current_thread().name))

    def load_program(self, program_id: str, program: Program) -> None:
        self._note("load")
        self.inner.load_program(program_id, program)

    def unload_program(self, program_id: str) -> None:
        self._note("unload")
        self.inner.unload_program(program_id)

    def run_batch(
        self, program_id: str, program: Program, domains: np.ndarray, priorities: np.ndarray | None,
        options: SolveOptions, deadline: float | None = None,
    ) -> BatchResult:  # fmt: skip
        self._note("run")
        if self.failures > 0:
            self.failures -= 1
            raise (DeviceLost if self.lost else DeviceFailure)("device: timeout (after 2 resets and retries)")
        return self.inner.run_batch(program_id, program, domains, priorities, options, deadline)

    def abort(self) -> None:
        self.inner.abort()

    def abort_running(self) -> None:
        self.inner.abort_running()

    def activity(self) -> float:
        return self.inner.activity()

    def status(self) -> DeviceInfo:
        self._note("status")
        return replace(self.inner.status(), backend=self.backend)

    def self_test(self) -> SelfTestReport:
        return run_self_test(self)

    def reset(self) -> None:
        self._note("reset")
        self.resets += 1
        self.inner.reset()

    def close(self) -> None:
        self.inner.close()


def solve_one(worker: DeviceWorker) -> BatchResult:
    ka = known_answers()[0]

    async def main() -> BatchResult:
        return await worker.run_batch(
            program_id(ka.program), ka.program, np.array([ka.domains], dtype=np.uint64), None, ka.options
        )

    return asyncio.run(main())


def test_worker_runs_every_device_call_on_one_dedicated_thread_and_status_on_another() -> None:
    dev = FlakyDevice()
    worker = DeviceWorker(dev)
    try:

        async def main() -> None:
            report = await worker.self_test()
            assert report.passed and worker.state == DeviceState.READY
            solve = asyncio.ensure_future(worker.run_batch(*_known_batch()))
            await asyncio.gather(*(worker.status() for _ in range(5)))
            await solve

        asyncio.run(main())
        jobs = {t for what, t in dev.by_thread if what != "status"}
        statuses = {t for what, t in dev.by_thread if what == "status"}
        assert len(jobs) == 1 and next(iter(jobs)).startswith("fpgacsp-device")
        assert len(statuses) == 1 and next(iter(statuses)).startswith("fpgacsp-status")
        assert threading.current_thread().name not in jobs | statuses
    finally:
        worker.close()


def _known_batch() -> tuple[str, Program, np.ndarray, None, SolveOptions]:
    ka = known_answers()[0]
    return program_id(ka.program), ka.program, np.array([ka.domains], dtype=np.uint64), None, ka.options


def test_worker_fails_only_the_batch_when_the_device_gives_up() -> None:
    dev = FlakyDevice(failures=1)
    worker = DeviceWorker(dev)
    try:
        with pytest.raises(DeviceFailure, match="after 2 resets and retries"):
            solve_one(worker)
        assert worker.state == DeviceState.STARTING  # a failed batch is not a failed device
        assert int(solve_one(worker).status[0]) == known_answers()[0].status
        assert dev.calls == ["run", "run"]
    finally:
        worker.close()


def test_worker_marks_a_lost_device_failed() -> None:
    dev = FlakyDevice(failures=1, lost=True)
    worker = DeviceWorker(dev)
    try:
        with pytest.raises(DeviceLost):
            solve_one(worker)
        assert worker.state == DeviceState.FAILED
    finally:
        worker.close()


def test_worker_state_follows_self_test_and_reset() -> None:
    dev = FlakyDevice()
    worker = DeviceWorker(dev)
    seen: list[DeviceState] = []
    worker.on_state_change = seen.append
    try:

        async def main() -> None:
            assert worker.state == DeviceState.STARTING
            dev.failures = 100  # every self-test batch fails
            assert not (await worker.self_test()).passed
            assert worker.state == DeviceState.FAILED
            dev.failures = 0
            report = await worker.reset()
            assert report.passed and worker.state == DeviceState.READY
            worker.set_state(DeviceState.DRAINING)
            assert (await worker.self_test()).passed
            assert worker.state == DeviceState.DRAINING  # draining is final

        asyncio.run(main())
        assert seen == [DeviceState.FAILED, DeviceState.RESETTING, DeviceState.READY, DeviceState.DRAINING]
        assert dev.resets == 1
    finally:
        worker.close()


def test_a_failed_device_runs_no_batch_queued_behind_the_one_that_failed_it() -> None:
    """The issue saw faults and a function reset 9-12 s after FAILED: queued batches still ran on a dead card."""
    dev = FlakyDevice(failures=1, lost=True)
    worker = DeviceWorker(dev)
    try:

        async def main() -> list[BaseException | BatchResult]:
            first = asyncio.ensure_future(worker.run_batch(*_known_batch()))
            queued = [asyncio.ensure_future(worker.run_batch(*_known_batch())) for _ in range(3)]
            return await asyncio.gather(first, *queued, return_exceptions=True)

        results = asyncio.run(main())
        assert isinstance(results[0], DeviceLost) and worker.state == DeviceState.FAILED
        assert all(isinstance(r, Unavailable) and "device: failed" in r.message for r in results[1:]), results
        assert dev.calls == ["run"]  # only the batch that found out ran
        with pytest.raises(Unavailable, match="device: failed; the daemon is trying to recover it"):
            solve_one(worker)
        assert dev.calls == ["run"]
    finally:
        worker.close()
