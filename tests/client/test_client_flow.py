"""The client's call flows (``fpgacsp._flow``) without any I/O: a scripted ``perform`` answers each operation.

Because the flows are sans-I/O, what a call sends and in which order (registration on first use, re-registration
on NOT_FOUND round a fleet, the INTERNAL retries, the waits for a daemon) is checked here operation by operation,
with no server and no clock games; and the blocking and the asyncio drivers are shown to run the very same
sequence. ``test_client_grpc.py`` checks the same contract end to end over a real socket.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
from fpgacsp import (
    DeadlineExceededError,
    FpgacspError,
    InvalidArgumentError,
    NotFoundError,
    ServerError,
    Status,
    UnavailableError,
    sudoku_program,
)
from fpgacsp._flow import (
    NOT_FOUND_RETRIES,
    Attempt,
    CountDaemons,
    Flow,
    Op,
    Session,
    Sleep,
    WaitReady,
    run,
    run_async,
)
from fpgacsp._retry import SOLVE_RETRIES_ON_INTERNAL
from fpgacsp._types import Method
from fpgacsp_proto import program_id
from fpgacsp_proto.bitset import pack_domains
from fpgacsp_proto.convert import pack_u64
from fpgacsp_proto.v1 import solver_pb2

PROGRAM = sudoku_program(2)
PID = program_id(PROGRAM)
FULL = np.full((3, 16), 0b1111, dtype=np.uint64)
SOLUTION = np.array([[1 << ((r + c) % 4) for c in range(4) for r in range(4)]] * 3, dtype=np.uint64)


def far() -> float:
    return time.monotonic() + 60


class Daemons:
    """Answers a flow's operations like a fleet of ``daemons`` would; ``fail[method]`` are errors to raise first.

    ``log`` is what the flow asked for, in order: a method name per attempt, ``count``, ``sleep``, ``ready``.
    """

    def __init__(self, daemons: int = 1, **fail: list[FpgacspError]) -> None:
        self.daemons = daemons
        self.fail = fail
        self.log: list[str] = []

    def perform(self, op: Op) -> Any:
        match op:
            case CountDaemons():
                self.log.append("count")
                return self.daemons
            case Sleep():
                self.log.append("sleep")
                return None
            case WaitReady():
                self.log.append("ready")
                return True
            case Attempt(method=method):
                op.timeout()  # as the clients do: a passed deadline sends nothing
                self.log.append(method)
                pending = self.fail.get(method)
                if pending:
                    raise pending.pop(0)
                return self.answer(op)
        raise AssertionError(op)

    async def perform_async(self, op: Op) -> Any:
        await asyncio.sleep(0)
        return self.perform(op)

    def answer(self, op: Attempt) -> Any:
        if op.method == Method.REGISTER_PROGRAM:
            return solver_pb2.RegisterProgramResponse(program_id=PID, created=True)
        assert op.method == Method.SOLVE, op.method
        b = op.request.batch_size
        return solver_pb2.SolveResponse(
            domains=pack_domains(SOLUTION[:b], 4), status=bytes([Status.SOLVED] * b), nodes=pack_u64(np.ones(b)),
            solutions=pack_u64(np.ones(b)), sweeps=pack_u64(np.full(b, 2)),
        )  # fmt: skip


def solve(session: Session, domains: np.ndarray = FULL, deadline: float | None = None) -> Flow[Any]:
    return session.solve(PROGRAM, domains, None, "solve", None, 1, far() if deadline is None else deadline)


def not_found() -> NotFoundError:
    return NotFoundError("program_id: unknown program", grpc.StatusCode.NOT_FOUND, Method.SOLVE)


def test_a_program_is_registered_once_then_solved() -> None:
    session, fake = Session("t", 0.0), Daemons()
    result = run(solve(session), fake.perform)
    assert fake.log == ["count", "RegisterProgram", "Solve"]
    assert (result.status == Status.SOLVED).all() and np.array_equal(result.domains, SOLUTION)
    run(solve(session), fake.perform)
    assert fake.log[3:] == ["Solve"]  # registered already, fleet counted already


def test_not_found_registers_again_round_the_fleet_then_gives_up() -> None:
    session, fake = Session("t", 0.0), Daemons(daemons=3)
    run(solve(session), fake.perform)
    assert fake.log == ["count"] + ["RegisterProgram"] * 3 + ["Solve"]  # one registration per daemon
    fake.log.clear()
    fake.fail["Solve"] = [not_found(), not_found()]
    run(solve(session), fake.perform)
    # the k-th retry registers k times round the fleet (_retry.registrations)
    assert fake.log == ["Solve"] + ["RegisterProgram"] * 3 + ["Solve"] + ["RegisterProgram"] * 6 + ["Solve"]
    fake.log.clear()
    fake.fail["Solve"] = [not_found() for _ in range(NOT_FOUND_RETRIES + 1)]
    with pytest.raises(NotFoundError, match="unknown program"):
        run(solve(session), fake.perform)
    assert fake.log.count("Solve") == NOT_FOUND_RETRIES + 1
    assert fake.log.count("RegisterProgram") == 3 * sum(range(1, NOT_FOUND_RETRIES + 1))


def test_a_pinned_program_is_registered_again_pinned() -> None:
    session, fake = Session("t", 0.0), Daemons()
    assert run(session.register(PROGRAM, True, far()), fake.perform) == PID
    sent: list[bool] = []
    original = fake.answer

    def answer(op: Attempt) -> Any:
        if op.method == Method.REGISTER_PROGRAM:
            sent.append(op.request.pin)
        return original(op)

    fake.answer = answer  # type: ignore[method-assign]
    fake.fail["Solve"] = [not_found()]
    run(solve(session), fake.perform)
    assert sent == [True]  # the daemon that forgot it gets the pin back


def test_internal_is_sent_again_and_other_server_errors_are_not() -> None:
    session, fake = Session("t", 0.0), Daemons()
    internal: list[FpgacspError] = [ServerError("gave up", grpc.StatusCode.INTERNAL, Method.SOLVE) for _ in range(3)]
    fake.fail["Solve"] = internal[:SOLVE_RETRIES_ON_INTERNAL]
    run(solve(session), fake.perform)
    assert fake.log.count("Solve") == SOLVE_RETRIES_ON_INTERNAL + 1
    fake.log.clear()
    fake.fail["Solve"] = [ServerError("x", grpc.StatusCode.INTERNAL, Method.SOLVE) for _ in range(9)]
    with pytest.raises(ServerError, match="x"):
        run(solve(session), fake.perform)
    assert fake.log == ["Solve"] * (SOLVE_RETRIES_ON_INTERNAL + 1)
    fake.log.clear()
    fake.fail["Solve"] = [ServerError("unknown", grpc.StatusCode.UNKNOWN, Method.SOLVE)]
    with pytest.raises(ServerError, match="unknown"):
        run(solve(session), fake.perform)
    assert fake.log == ["Solve"]


def unavailable() -> UnavailableError:
    return UnavailableError("connection refused", grpc.StatusCode.UNAVAILABLE, Method.SOLVE)


def test_an_unavailable_daemon_is_waited_out_only_when_asked() -> None:
    session, fake = Session("t", 5.0), Daemons()
    run(session.register(PROGRAM, False, far()), fake.perform)
    fake.log.clear()
    fake.fail["Solve"] = [unavailable(), unavailable()]
    assert run(solve(session), fake.perform).batch_size == 3
    assert fake.log == ["Solve", "sleep", "ready", "Solve", "sleep", "ready", "Solve"]
    failing = Session("t", 0.0)  # the default: fail fast, the error as gRPC's own retries left it
    fake = Daemons(Solve=[unavailable()])
    with pytest.raises(UnavailableError, match="connection refused"):
        run(solve(failing), fake.perform)
    assert fake.log == ["count", "RegisterProgram", "Solve"]


def test_one_deadline_for_every_rpc_of_a_call() -> None:
    session = Session("t", 0.0)
    deadlines: list[float] = []
    fake = Daemons()

    def perform(op: Op) -> Any:
        if isinstance(op, Attempt):
            deadlines.append(op.deadline)
        return fake.perform(op)

    deadline = far()
    run(solve(session, deadline=deadline), perform)
    assert deadlines == [deadline, deadline]  # RegisterProgram and Solve share it
    with pytest.raises(DeadlineExceededError, match="deadline passed before Solve was sent") as exc:
        run(solve(session, deadline=time.monotonic() - 1), fake.perform)
    assert exc.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and exc.value.method == "Solve"


def test_nothing_is_asked_for_an_empty_batch_or_bad_inputs() -> None:
    session, fake = Session("t", 0.0), Daemons()
    assert run(solve(session, FULL[:0]), fake.perform).batch_size == 0
    with pytest.raises(InvalidArgumentError, match="domains: expected shape"):
        run(solve(session, FULL[:, :3]), fake.perform)
    assert fake.log == []


def test_the_blocking_and_the_asyncio_drivers_run_the_same_flow() -> None:
    def scenario(drive: Callable[[Flow[Any], Daemons], Any]) -> tuple[list[str], list[Any]]:
        session = Session("t", 5.0)
        fake = Daemons(daemons=2, Solve=[not_found(), unavailable()], RegisterProgram=[unavailable()])
        results = [drive(solve(session), fake), drive(session.register(PROGRAM, True, far()), fake)]
        fake.fail["Solve"] = [not_found() for _ in range(NOT_FOUND_RETRIES + 1)]
        try:
            drive(solve(session), fake)
        except NotFoundError as exc:
            results.append(str(exc))
        return fake.log, [r.domains.tolist() if hasattr(r, "domains") else r for r in results]

    blocking = scenario(lambda flow, fake: run(flow, fake.perform))
    awaiting = scenario(lambda flow, fake: asyncio.run(run_async(flow, fake.perform_async)))
    assert blocking == awaiting
    assert blocking[0][:5] == ["count", "RegisterProgram", "sleep", "ready", "RegisterProgram"]


def test_an_error_that_is_not_the_flows_passes_out_and_closes_it() -> None:
    flow = solve(Session("t", 5.0))

    def perform(op: Op) -> Any:
        raise KeyboardInterrupt  # e.g. asyncio.CancelledError in the asyncio client: never thrown into the flow

    with pytest.raises(KeyboardInterrupt):
        run(flow, perform)
    assert inspect.getgeneratorstate(flow) == inspect.GEN_CLOSED  # nothing left suspended
