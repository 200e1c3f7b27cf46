"""What a gRPC client's call does, written once and free of I/O: the sync and the asyncio client only drive it.

Each call is a *flow*: a generator that yields the operations it needs done (:class:`Attempt` one RPC,
:class:`Sleep`, :class:`WaitReady` for the channel, :class:`CountDaemons` of a fleet) and is sent each result, or
thrown the library error an attempt ended in. The flow decides everything else: the request messages, a program
registered on first use, ``NOT_FOUND`` answered by registering again (up to ``NOT_FOUND_RETRIES`` times, on every
daemon of a fleet), a Solve the device gave up on sent again, an unavailable daemon waited out (``_retry``'s
policy), one deadline across every RPC of the call, and the decoding of the answer. A client supplies the I/O:
``_client.GrpcClient`` performs the operations by blocking (:func:`run`), ``_async_client.GrpcAsyncClient`` by
awaiting (:func:`run_async`), so the two cannot drift apart (they once mirrored each other line for line).

The errors of an attempt are converted before they reach the flow (the client's ``_attempt``, the one place a
``grpc.RpcError`` is caught); anything else the I/O raises (``asyncio.CancelledError``, ``KeyboardInterrupt``)
is not the flow's business: it passes straight out and the flow is closed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from fpgacsp_proto.isa import Program
from fpgacsp_proto.v1 import admin_pb2, solver_pb2

from . import _codec, _retry
from ._errors import DeadlineExceededError, FpgacspError, NotFoundError, ServerError
from ._types import DeviceStatus, Method, ProgramInfo, ResetResult, SelfTestResult, SolveResult, Stats

T = TypeVar("T")

# Re-registrations of one Solve: one for a daemon that forgot the program, more for a fleet whose daemons each
# have to learn it (the k-th retry registers k times round the fleet, _retry.registrations).
NOT_FOUND_RETRIES = 6


# --- the operations a flow asks its client for -----------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """Send ``request`` as ``method``, once, with what is left of ``deadline``; the result is the response."""

    method: Method
    request: Any
    deadline: float  # absolute, time.monotonic()

    def timeout(self) -> float:
        """Seconds left for this attempt, or :class:`DeadlineExceededError` when none are (nothing is sent)."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError(
                f"deadline passed before {self.method} was sent", grpc.StatusCode.DEADLINE_EXCEEDED, self.method
            )
        return remaining


@dataclass(frozen=True)
class Sleep:
    """Back off for ``seconds``; the result is ignored."""

    seconds: float


@dataclass(frozen=True)
class WaitReady:
    """Wait at most ``timeout_s`` for the channel to connect; the result is whether it did."""

    timeout_s: float


@dataclass(frozen=True)
class CountDaemons:
    """How many daemons ``target`` names (``_channel.fleet_size``: a ``dns:`` name is resolved, blocking I/O)."""

    target: str


Op = Attempt | Sleep | WaitReady | CountDaemons
Flow = Generator[Op, Any, T]


class _Done(Generic[T]):
    """A flow's return value, told apart from the next operation."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


def _step(flow: Flow[T], result: Any, error: FpgacspError | None) -> Op | _Done[T]:
    """Hand the last operation's outcome (a result, or the error it raised) to ``flow``; its next operation."""
    try:
        return flow.send(result) if error is None else flow.throw(error)
    except StopIteration as stop:
        return _Done(stop.value)


def run(flow: Flow[T], perform: Callable[[Op], Any]) -> T:
    """Drive ``flow`` to its end, doing each operation with ``perform`` (blocking); its return value."""
    with closing(flow):
        result: Any = None
        error: FpgacspError | None = None
        while not isinstance(op := _step(flow, result, error), _Done):
            try:
                result, error = perform(op), None
            except FpgacspError as exc:
                result, error = None, exc
        return op.value


async def run_async(flow: Flow[T], perform: Callable[[Op], Awaitable[Any]]) -> T:
    """:func:`run` for asyncio: ``perform`` is awaited."""
    with closing(flow):
        result: Any = None
        error: FpgacspError | None = None
        while not isinstance(op := _step(flow, result, error), _Done):
            try:
                result, error = await perform(op), None
            except FpgacspError as exc:
                result, error = None, exc
        return op.value


# --- flows -----------------------------------------------------------------------------------------------------


def rpc(target: str, wait_for_daemon_s: float, method: Method, request: Any, deadline: float) -> Flow[Any]:
    """One RPC within ``deadline``, waiting out an unavailable daemon as :class:`_retry.DaemonWait` says."""
    wait = _retry.DaemonWait(target, wait_for_daemon_s, deadline)
    while True:
        try:
            return (yield Attempt(method, request, deadline))
        except _retry.HANDLED as err:
            backoff = wait.pause_after(err)  # raises when there is no waiting left
        yield Sleep(backoff)
        wait.resume((yield WaitReady(wait.left())))  # raises if the daemon did not come back in time


class Session:
    """One gRPC client's state between calls (program ids, what it registered, the fleet's size) and its calls,
    each a flow. Shared by the threads of a sync client like the client itself: the state is a cache whose races
    cost at most a redundant registration."""

    def __init__(self, target: str, wait_for_daemon_s: float) -> None:
        self.target = target
        self.wait_for_daemon_s = wait_for_daemon_s
        self.ids = _codec.ProgramIds()
        self.daemons: int | None = None  # how many the target names, counted at the first registration

    def call(self, method: Method, request: Any, deadline: float) -> Flow[Any]:
        return rpc(self.target, self.wait_for_daemon_s, method, request, deadline)

    # --- data plane ------------------------------------------------------------------------------------------

    def register(self, program: Program, pin: bool, deadline: float) -> Flow[str]:
        program = _codec.check_program(program)
        return (yield from self._register(program, self.ids.id_of(program), pin, deadline))

    def solve(
        self,
        program: Program,
        domains: Any,
        priorities: Any,
        mode: Any,
        node_limit: Any,
        max_solutions: Any,
        deadline: float,
    ) -> Flow[SolveResult]:
        """Check the inputs (nothing is sent for bad ones or for B = 0), register on first use, solve, decode."""
        inputs = _codec.check_solve_inputs(program, domains, priorities, mode, node_limit, max_solutions)
        if inputs.batch == 0:
            return _codec.empty_result(program.num_vars)
        pid = self.ids.id_of(program)
        request = _codec.solve_request(pid, program, inputs)
        if pid not in self.ids.registered:
            yield from self._register(program, pid, False, deadline)
        for retry in range(_retry.SOLVE_RETRIES_ON_INTERNAL + 1):
            try:
                response = yield from self._solve_once(program, pid, request, deadline)
                break
            except ServerError as err:  # the device gave up on the batch: solving is pure, send it again
                if retry == _retry.SOLVE_RETRIES_ON_INTERNAL or not _retry.solve_failed_on_the_device(err):
                    raise
        return _codec.solve_result(response, program, inputs.batch)

    def release(self, program: Program | str, deadline: float) -> Flow[bool]:
        pid = self._id_of(program)
        request = solver_pb2.ReleaseProgramRequest(program_id=pid)
        response = yield from self.call(Method.RELEASE_PROGRAM, request, deadline)
        self.ids.forget(pid)
        return bool(response.released)

    def program_info(self, program: Program | str, deadline: float) -> Flow[ProgramInfo]:
        request = solver_pb2.GetProgramRequest(program_id=self._id_of(program))
        response = yield from self.call(Method.GET_PROGRAM, request, deadline)
        return _codec.program_info(response.info)

    def list_programs(self, deadline: float) -> Flow[list[ProgramInfo]]:
        response = yield from self.call(Method.LIST_PROGRAMS, solver_pb2.ListProgramsRequest(), deadline)
        return [_codec.program_info(p) for p in response.programs]

    # --- admin plane -----------------------------------------------------------------------------------------

    def device_status(self, deadline: float) -> Flow[DeviceStatus]:
        request = admin_pb2.GetDeviceStatusRequest()
        return _codec.device_status((yield from self.call(Method.GET_DEVICE_STATUS, request, deadline)))

    def stats(self, deadline: float) -> Flow[Stats]:
        return _codec.stats((yield from self.call(Method.GET_STATS, admin_pb2.GetStatsRequest(), deadline)))

    def self_test(self, deadline: float) -> Flow[SelfTestResult]:
        request = admin_pb2.SelfTestRequest()
        return _codec.self_test_result((yield from self.call(Method.SELF_TEST, request, deadline)))

    def reset(self, deadline: float) -> Flow[ResetResult]:
        return _codec.reset_result((yield from self.call(Method.RESET, admin_pb2.ResetRequest(), deadline)))

    # --- internals -------------------------------------------------------------------------------------------

    def _solve_once(self, program: Program, pid: str, request: Any, deadline: float) -> Flow[Any]:
        # The daemon forgot the program (released, evicted, restarted), or, in a fleet, the daemon this Solve went
        # to never saw it: register again (idempotent; on every daemon of a fleet, _retry.registrations) and retry.
        for attempt in range(NOT_FOUND_RETRIES + 1):
            try:
                return (yield from self.call(Method.SOLVE, request, deadline))
            except NotFoundError:
                if attempt == NOT_FOUND_RETRIES:
                    raise
                self.ids.registered.discard(pid)
                yield from self._register(program, pid, pid in self.ids.pinned, deadline, rounds=attempt + 1)
        raise AssertionError("unreachable")

    def _register(self, program: Program, pid: str, pin: bool, deadline: float, rounds: int = 1) -> Flow[str]:
        request = _codec.register_request(program, pin)
        if self.daemons is None:
            self.daemons = yield CountDaemons(self.target)
        for _ in range(_retry.registrations(self.daemons, rounds)):  # one per daemon of a fleet
            response = yield from self.call(Method.REGISTER_PROGRAM, request, deadline)
            self.ids.mark_registered(_codec.check_registered_id(response, pid), pin)
        return pid

    def _id_of(self, program: Program | str) -> str:
        return _codec.check_program_id(program) if isinstance(program, str) else self.ids.id_of(program)
