"""Servicers over the real core and engine device, without a socket: a fake context records what gRPC would
send. Every error of the contract maps to its status code with a message naming the field."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np
import pytest
from fpgacsp_proto.bitset import pack_domains, unpack_domains
from fpgacsp_proto.convert import program_from_proto, program_to_proto, unpack_status, unpack_u64
from fpgacsp_proto.encoding import program_id
from fpgacsp_proto.isa import AllDiff, Mode, Neq, Program, ProgramError, make_program
from fpgacsp_proto.v1 import admin_pb2, isa_pb2, solver_pb2
from fpgacspd.config import BatchingConfig, Config, DeviceConfig, RegistryConfig, SolveConfig
from fpgacspd.core import Core
from fpgacspd.device import DeviceState, DeviceWorker, make_device
from fpgacspd.engine import FastEngine, SolveOptions
from fpgacspd.errors import (
    Cancelled,
    DeadlineExpired,
    DeviceFailure,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from fpgacspd.interceptors import CallAccounting
from fpgacspd.selftest import known_answers
from fpgacspd.server_state import ServerState
from fpgacspd.service import RAW_METHODS, AdminServicer, SolverServicer, to_status


class Aborted(Exception):  # noqa: N818 (stands for grpc's own abort exception)
    pass


class FakeContext:
    """The parts of ``grpc.aio.ServicerContext`` the servicers and the call accounting use."""

    def __init__(self, time_remaining: float | None = None) -> None:
        self.status: grpc.StatusCode | None = None
        self.details = ""
        self._remaining = time_remaining

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self.status, self.details = code, details
        raise Aborted(details)

    def code(self) -> grpc.StatusCode | None:
        return self.status

    def time_remaining(self) -> float | None:
        return self._remaining


QUEENS = known_answers()[1]  # 6-queens, 4 solutions


def sudoku4() -> Program:
    return known_answers()[0].program


Test = Callable[[SolverServicer, AdminServicer, Core], Awaitable[None]]


def with_daemon(test: Test, config: Config | None = None) -> None:
    async def main() -> None:
        worker = DeviceWorker(make_device(DeviceConfig(threads=1)))
        core = Core(config or Config(batching=BatchingConfig(max_delay_us=0)), worker)
        core.start()
        try:
            assert (await core.self_test()).passed
            await test(SolverServicer(core), AdminServicer(core), core)
        finally:
            await core.batcher.close()
            worker.close()

    asyncio.run(asyncio.wait_for(main(), timeout=60))


def as_received(handler: Callable[..., Awaitable[Any]], request: Any) -> Any:
    """What grpc hands the handler: the message, or its bytes for a method that parses its own body."""
    return request.SerializeToString() if handler.__name__ in RAW_METHODS else request


def accounted(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The handler as the server runs it: inside the call accounting, which counts its answers."""
    servicer = handler.__self__  # type: ignore[attr-defined]
    accounting = CallAccounting((), ServerState(), servicer.core.metrics)
    return accounting._accounted(handler, handler.__name__)


async def call(handler: Callable[..., Awaitable[Any]], request: Any, timeout: float | None = None) -> Any:
    return await accounted(handler)(as_received(handler, request), FakeContext(timeout))


async def fails(handler: Callable[..., Awaitable[Any]], request: Any) -> tuple[grpc.StatusCode, str]:
    ctx = FakeContext()
    with pytest.raises(Aborted):
        await accounted(handler)(as_received(handler, request), ctx)
    assert ctx.status is not None
    return ctx.status, ctx.details


async def register(solver: SolverServicer, program: Program, pin: bool = False) -> str:
    r = await call(
        solver.RegisterProgram, solver_pb2.RegisterProgramRequest(program=program_to_proto(program), pin=pin)
    )
    return str(r.program_id)


def solve_request(pid: str, program: Program, domains: np.ndarray, **kw: Any) -> solver_pb2.SolveRequest:
    return solver_pb2.SolveRequest(
        program_id=pid, batch_size=len(domains), domains=pack_domains(domains, program.domain_size), **kw
    )


def test_register_get_list_release() -> None:
    async def test(solver: SolverServicer, admin: AdminServicer, core: Core) -> None:
        p = sudoku4()
        req = solver_pb2.RegisterProgramRequest(program=program_to_proto(p), pin=True)
        first = await call(solver.RegisterProgram, req)
        again = await call(solver.RegisterProgram, req)
        assert first.program_id == again.program_id == program_id(p)
        assert first.created and not again.created
        info = first.info
        assert (info.num_vars, info.domain_size, info.num_constraints, info.pinned) == (16, 4, 12, True)
        got = await call(
            solver.GetProgram, solver_pb2.GetProgramRequest(program_id=first.program_id, include_program=True)
        )
        assert program_from_proto(got.program) == p and got.info.program_id == first.program_id
        listed = await call(solver.ListPrograms, solver_pb2.ListProgramsRequest())
        assert [i.program_id for i in listed.programs] == [first.program_id]
        rel = solver_pb2.ReleaseProgramRequest(program_id=first.program_id)
        assert (await call(solver.ReleaseProgram, rel)).released
        assert not (await call(solver.ReleaseProgram, rel)).released
        code, details = await fails(solver.GetProgram, solver_pb2.GetProgramRequest(program_id=first.program_id))
        assert code == grpc.StatusCode.NOT_FOUND and "unknown program" in details

    with_daemon(test)


def test_register_errors() -> None:
    async def test(solver: SolverServicer, admin: AdminServicer, core: Core) -> None:
        code, details = await fails(solver.RegisterProgram, solver_pb2.RegisterProgramRequest())
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("program: missing")
        bad = isa_pb2.Program(num_vars=2, domain_size=3)
        c = bad.constraints.add()
        c.neq.x, c.neq.y = 0, 5
        code, details = await fails(solver.RegisterProgram, solver_pb2.RegisterProgramRequest(program=bad))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("program: constraints[0]")
        big = make_program(20, 3, [Neq(i, i + 1) for i in range(19)])
        req = solver_pb2.RegisterProgramRequest(program=program_to_proto(big))
        code, details = await fails(solver.RegisterProgram, req)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "registry.max_vars = 10" in details

    with_daemon(test, Config(registry=RegistryConfig(max_vars=10)))


def test_solve_equals_the_engine_bit_for_bit() -> None:
    async def test(solver: SolverServicer, admin: AdminServicer, core: Core) -> None:
        p = QUEENS.program
        pid = await register(solver, p)
        rng = np.random.default_rng(0)
        doms = np.full((5, 6), 63, dtype=np.uint64)
        doms[:, 0] = 1 << rng.integers(0, 6, size=5)
        prios = rng.integers(0, 4, size=(5, 6, 6), dtype=np.uint8)
        req = solve_request(pid, p, doms, priorities=prios.tobytes(), mode=Mode.SOLVE, max_solutions=3)
        resp = await call(solver.Solve, req, timeout=10.0)
        want = FastEngine(threads=1).solve(p, doms, prios, SolveOptions(Mode.SOLVE, max_solutions=3))
        np.testing.assert_array_equal(unpack_domains(resp.domains, 5, 6, 6), want.domains)
        np.testing.assert_array_equal(unpack_status(resp.status, 5), want.status)
        np.testing.assert_array_equal(unpack_u64(resp.nodes, 5, "nodes"), want.nodes)
        np.testing.assert_array_equal(unpack_u64(resp.solutions, 5, "solutions"), want.solutions)
        np.testing.assert_array_equal(unpack_u64(resp.sweeps, 5, "sweeps"), want.sweeps)
        t = resp.timing
        assert t.device_batch_size == 5 and t.merged_requests == 1 and t.total_us >= t.queue_us
        assert core.registry.get(pid).solves == 1

    with_daemon(test)


def test_mode_unspecified_means_solve_and_zero_limits_mean_defaults() -> None:
    async def test(solver: SolverServicer, admin: AdminServicer, core: Core) -> None:
        p = QUEENS.program
        pid = await register(solver, p)
        doms = np.full((1, 6), 63, dtype=np.uint64)
        resp = await call(solver.Solve, solve_request(pid, p, doms))
        want = FastEngine(threads=1).solve(p, doms, None, SolveOptions(Mode.SOLVE, 5, 1))
        assert unpack_u64(resp.nodes, 1, "nodes")[0] == want.nodes[0]
        assert unpack_status(resp.status, 1)[0] == want.status[0]

    with_daemon(test, Config(batching=BatchingConfig(max_delay_us=0), solve=SolveConfig(default_node_limit=5)))


def test_solve_input_errors_are_invalid_argument_naming_the_field() -> None:
    async def test(solver: SolverServicer, admin: AdminServicer, core: Core) -> None:
        p = make_program(3, 9, [AllDiff((0, 1, 2))])  # 16-bit words
        pid = await register(solver, p)
        good = np.full((2, 3), 0x1FF, dtype=np.uint64)
        cases: list[tuple[solver_pb2.SolveRequest, grpc.StatusCode, str]] = [
            (solver_pb2.SolveRequest(program_id=pid, batch_size=0), grpc.StatusCode.INVALID_ARGUMENT,
             "batch_size: must be at least 1, got 0"),
            (solver_pb2.SolveRequest(program_id=pid, batch_size=5), grpc.StatusCode.INVALID_ARGUMENT,
             "batch_size: 5 exceeds solve.max_request_instances = 4"),
            (solve_request(pid, p, good, mode=7), grpc.StatusCode.INVALID_ARGUMENT, "mode: unknown value 7"),
            (solver_pb2.SolveRequest(program_id=pid, batch_size=2, domains=b"\xff" * 11),
             grpc.StatusCode.INVALID_ARGUMENT, "domains: expected 12 bytes (2 x 3 words of 2 bytes), got 11"),
            (solver_pb2.SolveRequest(program_id=pid, batch_size=2, domains=np.full(6, 0x200, "<u2").tobytes()),
             grpc.StatusCode.INVALID_ARGUMENT, "domains[0, 0] = 0x200 has bits set at or above domain_size 9"),
            (solve_request(pid, p, good, priorities=b"\x00" * 5), grpc.StatusCode.INVALID_ARGUMENT,
             "priorities: expected 54 bytes (uint8[2, 3, 9]), got 5"),
            (solve_request(pid, p, good, node_limit=2**63), grpc.StatusCode.INVALID_ARGUMENT,
             "node_limit: 9223372036854775808 exceeds this daemon's solve.max_node_limit = 100000000"),
            (solve_request(pid, p, good, node_limit=100_000_001), grpc.StatusCode.INVALID_ARGUMENT,
             "node_limit: 100000001 exceeds this daemon's solve.max_node_limit = 100000000"),
            (solve_request(pid, p, good, max_solutions=2**64 - 1), grpc.StatusCode.INVALID_ARGUMENT,
             "max_solutions: must be at most 2^63 - 1"),
            (solve_request("f" * 64, p, good), grpc.StatusCode.NOT_FOUND, "program_id: unknown program ffff"),
            (solve_request("nope", p, good), grpc.StatusCode.INVALID_ARGUMENT, "program_id: expected 64 lowercase hex"),
        ]  # fmt: skip
        for request, code, message in cases:
            got_code, details = await fails(solver.Solve, request)
            assert (got_code, message) == (code, details[: len(message)]), details
        stats = await call(admin.GetStats, admin_pb2.GetStatsRequest())
        counts = {(m.method, m.code): m.count for m in stats.requests}
        assert counts[("Solve", "INVALID_ARGUMENT")] == 10 and counts[("Solve", "NOT_FOUND")] == 1
        assert counts[("RegisterProgram", "OK")] == 1
        assert core.batcher.stats.submitted == 0  # nothing bad reached the batcher

    with_daemon(test, Config(solve=SolveConfig(max_request_instances=4)))


def test_solve_is_unavailable_while_starting_failed_or_draining() -> None:
    async def test(solver: SolverServicer, admin: AdminServicer, core: Core) -> None:
        p = QUEENS.program
        pid = await register(solver, p)
        req = solve_request(pid, p, np.full((1, 6), 63, dtype=np.uint64))
        for state, message in [
            (DeviceState.STARTING, "device: starting"),
            (DeviceState.FAILED, "device: failed its self-test"),
        ]:
            core.worker.set_state(state)
            code, details = await fails(solver.Solve, req)
            assert code == grpc.StatusCode.UNAVAILABLE and details.startswith(message), details
        core.worker.set_state(DeviceState.READY)
        await call(solver.Solve, req)
        await core.drain()
        code, details = await fails(solver.Solve, req)
        assert code == grpc.StatusCode.UNAVAILABLE and "draining" in details
        code, _ = await fails(solver.RegisterProgram, solver_pb2.RegisterProgramRequest(program=program_to_proto(p)))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert (await call(solver.ListPrograms, solver_pb2.ListProgramsRequest())).programs  # reads still answer
        status = await call(admin.GetDeviceStatus, admin_pb2.GetDeviceStatusRequest())
        assert status.state == admin_pb2.DEVICE_STATE_DRAINING

    with_daemon(test)


def test_an_expired_deadline_is_deadline_exceeded() -> None:
    async def test(solver: SolverServicer, admin: AdminServicer, core: Core) -> None:
        p = QUEENS.program
        pid = await register(solver, p)
        ctx = FakeContext(time_remaining=-0.001)
        with pytest.raises(Aborted):
            await solver.Solve(solve_request(pid, p, np.full((1, 6), 63, dtype=np.uint64)), ctx)
        assert ctx.status == grpc.StatusCode.DEADLINE_EXCEEDED and ctx.details.startswith("deadline:")

    with_daemon(test)


def test_admin_status_self_test_reset_and_stats() -> None:
    async def test(solver: SolverServicer, admin: AdminServicer, core: Core) -> None:
        p = QUEENS.program
        pid = await register(solver, p)
        await call(solver.Solve, solve_request(pid, p, np.full((3, 6), 63, dtype=np.uint64)))
        status = await call(admin.GetDeviceStatus, admin_pb2.GetDeviceStatusRequest())
        assert status.backend == "sim" and status.state == admin_pb2.DEVICE_STATE_READY
        assert status.programs_loaded == 1 and status.max_batch == 1024 and status.daemon_version
        assert status.instances >= 3 and status.batches >= 1
        st = await call(admin.SelfTest, admin_pb2.SelfTestRequest())
        assert st.passed and len(st.cases) == len(known_answers())
        reset = await call(admin.Reset, admin_pb2.ResetRequest())
        assert reset.self_test_passed
        after = await call(admin.GetDeviceStatus, admin_pb2.GetDeviceStatusRequest())
        assert after.resets == status.resets + 1 and after.state == admin_pb2.DEVICE_STATE_READY
        await call(solver.Solve, solve_request(pid, p, np.full((2, 6), 63, dtype=np.uint64)))  # reloads after reset
        stats = await call(admin.GetStats, admin_pb2.GetStatsRequest())
        assert stats.batches == 2 and stats.instances == 5 and stats.mean_batch_size == 2.5
        assert stats.programs_loaded == 1 and stats.queue_depth == 0

    with_daemon(test)


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (InvalidArgument("domains: bad"), grpc.StatusCode.INVALID_ARGUMENT, "domains: bad"),
        (NotFound("program_id: unknown"), grpc.StatusCode.NOT_FOUND, "program_id: unknown"),
        (ResourceExhausted("queue: full"), grpc.StatusCode.RESOURCE_EXHAUSTED, "queue: full"),
        (Unavailable("daemon: draining"), grpc.StatusCode.UNAVAILABLE, "daemon: draining"),
        (DeadlineExpired("deadline: passed"), grpc.StatusCode.DEADLINE_EXCEEDED, "deadline: passed"),
        (Cancelled("request: cancelled"), grpc.StatusCode.CANCELLED, "request: cancelled"),
        (DeviceFailure("device: failed"), grpc.StatusCode.INTERNAL, "device: failed"),
        (ProgramError("constraints[1]: bad"), grpc.StatusCode.INVALID_ARGUMENT, "program: constraints[1]: bad"),
        (KeyError("oops"), grpc.StatusCode.INTERNAL, "internal error: KeyError: 'oops'"),
    ],
)
def test_to_status_maps_every_error_of_the_contract(error: Exception, code: grpc.StatusCode, message: str) -> None:
    assert to_status(error) == (code, message)


def test_a_full_queue_is_resource_exhausted_through_the_servicer() -> None:
    async def test(solver: SolverServicer, admin: AdminServicer, core: Core) -> None:
        p = QUEENS.program
        pid = await register(solver, p)
        gate = asyncio.Event()
        real = core.worker.run_batch

        async def blocked(*args: Any) -> Any:
            await gate.wait()
            return await real(*args)

        core.worker.run_batch = blocked  # type: ignore[assignment]
        req = solve_request(pid, p, np.full((1, 6), 63, dtype=np.uint64))
        first = asyncio.ensure_future(call(solver.Solve, req))  # on the device
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(call(solver.Solve, req))  # queued
        await asyncio.sleep(0.01)
        code, details = await fails(solver.Solve, req)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "batching.max_queue = 1" in details
        gate.set()
        await asyncio.gather(first, second)
        stats = await call(admin.GetStats, admin_pb2.GetStatsRequest())
        assert stats.rejected_queue_full == 1

    with_daemon(test, Config(batching=BatchingConfig(max_batch=1, max_delay_us=0, max_queue=1)))


def test_a_cancelled_call_is_counted_and_dropped() -> None:
    async def test(solver: SolverServicer, admin: AdminServicer, core: Core) -> None:
        p = QUEENS.program
        pid = await register(solver, p)
        req = solve_request(pid, p, np.full((1, 6), 63, dtype=np.uint64))
        task = asyncio.ensure_future(call(solver.Solve, req))
        await asyncio.sleep(0.05)  # queued, waiting out max_delay_us
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert core.batcher.stats.dropped_cancelled == 1 and core.batcher.stats.batches == 0
        assert core.metrics.request_counts()[("Solve", "CANCELLED")] == 1
        core.batcher.check_invariant()

    with_daemon(test, Config(batching=BatchingConfig(max_delay_us=10_000_000)))
