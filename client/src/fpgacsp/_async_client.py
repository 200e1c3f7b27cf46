"""``connect_async(target)``: the same client as coroutines, for asyncio programs.

Same semantics as ``_client`` (deadline on every call, register on first use, one re-register on
``NOT_FOUND``, ``UNAVAILABLE`` retried by gRPC's policy and then for up to ``wait_for_daemon_s`` by the same
``_retry.DaemonWait`` as the sync client, errors converted in :meth:`GrpcAsyncClient._attempt`).
The gRPC channel is created on the first call, inside the event loop that makes it, since a ``grpc.aio``
channel belongs to one loop; ``connect_async`` itself does no I/O and can run outside a loop. Cancelling
the awaiting task cancels the RPC (the daemon drops the request before it reaches the device) and raises
``asyncio.CancelledError`` as asyncio expects; it is never turned into :class:`fpgacsp.CancelledError`.
The ``"local"`` target runs the engine in a worker thread (``asyncio.to_thread``; the engine releases the
GIL), so the loop stays responsive.
"""

from __future__ import annotations

import abc
import asyncio
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc
import grpc.aio
from fpgacsp_proto.isa import Mode, Program
from fpgacsp_proto.v1 import admin_pb2, admin_pb2_grpc, solver_pb2, solver_pb2_grpc

from . import _channel, _codec, _retry
from ._client import ADMIN_METHODS, DEFAULT_TARGET, DEFAULT_TIMEOUT, LOCAL_TARGET, NOT_FOUND_RETRIES
from ._errors import DeadlineExceededError, FpgacspError, NotFoundError, ServerError, from_rpc_error
from ._types import DeviceStatus, ProgramInfo, ResetResult, SelfTestResult, SolveResult, Stats


def connect_async(
    target: str = DEFAULT_TARGET,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    wait_for_daemon_s: float = _retry.DEFAULT_WAIT_FOR_DAEMON_S,
    token: str | None = None,
    tls: _channel.TLS | bool | None = None,
    **channel_options: Any,
) -> AsyncClient:
    """The asyncio twin of :func:`fpgacsp.connect` (same targets, same options); use ``async with``."""
    target = _channel.check_target(target)
    timeout = _codec.check_timeout(timeout)
    wait_for_daemon_s = _retry.check_wait_for_daemon(wait_for_daemon_s)
    if target == LOCAL_TARGET:
        return AsyncLocalClient(timeout=timeout, **channel_options)
    return GrpcAsyncClient(
        target,
        timeout=timeout,
        wait_for_daemon_s=wait_for_daemon_s,
        token=token,
        tls=tls,
        channel_options=channel_options,
    )


class AsyncClient(abc.ABC):
    """What every target offers, as coroutines. Use with ``async with``, or ``await close()``."""

    target: str
    timeout: float

    @abc.abstractmethod
    async def register(self, program: Program, *, pin: bool = False, timeout: float | None = None) -> str: ...

    @abc.abstractmethod
    async def solve(
        self,
        program: Program,
        domains: Any,
        priorities: Any | None = None,
        *,
        mode: Mode | str = Mode.SOLVE,
        node_limit: int | None = None,
        max_solutions: int = 1,
        timeout: float | None = None,
    ) -> SolveResult: ...

    @abc.abstractmethod
    async def release(self, program: Program | str, *, timeout: float | None = None) -> bool: ...

    @abc.abstractmethod
    async def program_info(self, program: Program | str, *, timeout: float | None = None) -> ProgramInfo: ...

    @abc.abstractmethod
    async def list_programs(self, *, timeout: float | None = None) -> list[ProgramInfo]: ...

    @abc.abstractmethod
    async def device_status(self, *, timeout: float | None = None) -> DeviceStatus: ...

    @abc.abstractmethod
    async def stats(self, *, timeout: float | None = None) -> Stats: ...

    @abc.abstractmethod
    async def self_test(self, *, timeout: float | None = None) -> SelfTestResult: ...

    @abc.abstractmethod
    async def reset(self, *, timeout: float | None = None) -> ResetResult: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} target={self.target!r}>"

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else _codec.check_timeout(timeout))


class GrpcAsyncClient(AsyncClient):
    """The daemon over ``grpc.aio``. Share it between the tasks of one event loop; not across fork."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        wait_for_daemon_s: float = _retry.DEFAULT_WAIT_FOR_DAEMON_S,
        token: str | None = None,
        tls: _channel.TLS | bool | None = None,
        channel_options: Mapping[str, Any] = {},
    ):
        from . import __version__

        self.target = target
        self.timeout = _codec.check_timeout(timeout)
        self.wait_for_daemon_s = _retry.check_wait_for_daemon(wait_for_daemon_s)
        self._token = token
        self._tls = _channel.check_tls(tls)
        self._metadata = _channel.auth_metadata(token)  # authorization: Bearer TOKEN, on every call
        self._overrides = dict(channel_options)
        self._options = _channel.channel_options(f"fpgacsp/{__version__}", self._overrides, _channel.is_fleet(target))
        self._channel: grpc.aio.Channel | None = None
        self._solver: solver_pb2_grpc.SolverStub | None = None
        self._admin: admin_pb2_grpc.AdminStub | None = None
        self._ids = _codec.ProgramIds()
        self._daemons: int | None = None  # how many the target names (_channel.fleet_size), at the first registration
        self._pid = os.getpid()
        self._closed = False

    def __reduce__(self) -> tuple[Callable[..., AsyncClient], tuple[Any, ...]]:
        return (
            _reconnect,
            (self.target, self.timeout, self._overrides, self.wait_for_daemon_s, self._token, self._tls),
        )

    async def register(self, program: Program, *, pin: bool = False, timeout: float | None = None) -> str:
        program = _codec.check_program(program)
        return await self._register(program, self._ids.id_of(program), pin, self._deadline(timeout))

    async def solve(
        self,
        program: Program,
        domains: Any,
        priorities: Any | None = None,
        *,
        mode: Mode | str = Mode.SOLVE,
        node_limit: int | None = None,
        max_solutions: int = 1,
        timeout: float | None = None,
    ) -> SolveResult:
        inputs = _codec.check_solve_inputs(program, domains, priorities, mode, node_limit, max_solutions)
        deadline = self._deadline(timeout)
        if inputs.batch == 0:
            return _codec.empty_result(program.num_vars)
        pid = self._ids.id_of(program)
        request = _codec.solve_request(pid, program, inputs)
        if pid not in self._ids.registered:
            await self._register(program, pid, False, deadline)
        for retry in range(_retry.SOLVE_RETRIES_ON_INTERNAL + 1):
            try:
                response = await self._solve_once(program, pid, request, deadline)
                break
            except ServerError as err:  # the device gave up on the batch: solving is pure, send it again
                if retry == _retry.SOLVE_RETRIES_ON_INTERNAL or not _retry.solve_failed_on_the_device(err):
                    raise
        return _codec.solve_result(response, program, inputs.batch)

    async def _solve_once(self, program: Program, pid: str, request: Any, deadline: float) -> Any:
        # The daemon forgot the program (released, evicted, restarted), or, in a fleet, the daemon this Solve went to
        # never saw it: register again (idempotent; on every daemon of a fleet, see _retry.registrations) and retry.
        for attempt in range(NOT_FOUND_RETRIES + 1):
            try:
                return await self._invoke("Solve", request, deadline)
            except NotFoundError:
                if attempt == NOT_FOUND_RETRIES:
                    raise
                self._ids.registered.discard(pid)
                await self._register(program, pid, pid in self._ids.pinned, deadline, rounds=attempt + 1)
        raise AssertionError("unreachable")

    async def release(self, program: Program | str, *, timeout: float | None = None) -> bool:
        pid = self._id_of(program)
        request = solver_pb2.ReleaseProgramRequest(program_id=pid)
        response = await self._invoke("ReleaseProgram", request, self._deadline(timeout))
        self._ids.forget(pid)
        return bool(response.released)

    async def program_info(self, program: Program | str, *, timeout: float | None = None) -> ProgramInfo:
        request = solver_pb2.GetProgramRequest(program_id=self._id_of(program))
        response = await self._invoke("GetProgram", request, self._deadline(timeout))
        return _codec.program_info(response.info)

    async def list_programs(self, *, timeout: float | None = None) -> list[ProgramInfo]:
        request = solver_pb2.ListProgramsRequest()
        response = await self._invoke("ListPrograms", request, self._deadline(timeout))
        return [_codec.program_info(p) for p in response.programs]

    async def device_status(self, *, timeout: float | None = None) -> DeviceStatus:
        request = admin_pb2.GetDeviceStatusRequest()
        deadline = self._deadline(timeout)
        return _codec.device_status(await self._invoke("GetDeviceStatus", request, deadline))

    async def stats(self, *, timeout: float | None = None) -> Stats:
        request = admin_pb2.GetStatsRequest()
        return _codec.stats(await self._invoke("GetStats", request, self._deadline(timeout)))

    async def self_test(self, *, timeout: float | None = None) -> SelfTestResult:
        request = admin_pb2.SelfTestRequest()
        response = await self._invoke("SelfTest", request, self._deadline(timeout))
        return _codec.self_test_result(response)

    async def reset(self, *, timeout: float | None = None) -> ResetResult:
        request = admin_pb2.ResetRequest()
        return _codec.reset_result(await self._invoke("Reset", request, self._deadline(timeout)))

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._channel is not None and os.getpid() == self._pid:
                await self._channel.close()

    async def _register(self, program: Program, pid: str, pin: bool, deadline: float, rounds: int = 1) -> str:
        request = _codec.register_request(program, pin)
        if self._daemons is None:  # a dns: target is resolved: not on the event loop
            self._daemons = await asyncio.to_thread(_channel.fleet_size, self.target)
        for _ in range(_retry.registrations(self._daemons, rounds)):  # one per daemon of a fleet
            response = await self._invoke("RegisterProgram", request, deadline)
            self._ids.mark_registered(_codec.check_registered_id(response, pid), pin)
        return pid

    def _id_of(self, program: Program | str) -> str:
        return _codec.check_program_id(program) if isinstance(program, str) else self._ids.id_of(program)

    async def _invoke(self, method: str, request: Any, deadline: float) -> Any:
        """Run one RPC with what is left of ``deadline``, waiting out an unavailable daemon (``_retry``)."""
        wait = _retry.DaemonWait(self.target, self.wait_for_daemon_s, deadline)
        while True:
            try:
                return await self._attempt(method, request, deadline)
            except _retry.HANDLED as err:
                backoff = wait.pause_after(err)  # raises when there is no waiting left
            await asyncio.sleep(backoff)
            assert self._channel is not None  # created by the first attempt
            wait.resume(await _channel.aio_wait_ready(self._channel, wait.left(), lambda: self._closed))

    async def _attempt(self, method: str, request: Any, deadline: float) -> Any:
        """One try of one RPC: the one place gRPC errors are converted."""
        solver, admin = self._stubs()
        call = getattr(admin if method in ADMIN_METHODS else solver, method)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError(
                f"deadline passed before {method} was sent", grpc.StatusCode.DEADLINE_EXCEEDED, method
            )
        try:
            return await call(request, timeout=remaining, metadata=self._metadata)
        except grpc.RpcError as exc:  # grpc.aio.AioRpcError included
            raise from_rpc_error(exc, method) from None

    def _stubs(self) -> tuple[solver_pb2_grpc.SolverStub, admin_pb2_grpc.AdminStub]:
        if self._closed:
            raise FpgacspError(f"this client of {self.target!r} is closed")
        if os.getpid() != self._pid:
            raise FpgacspError(
                f"this client of {self.target!r} was created in process {self._pid} and cannot be used after "
                "fork (gRPC channels do not survive it): call fpgacsp.connect_async() in the process that uses it"
            )
        if self._solver is None or self._admin is None:
            self._channel = _channel.aio_channel(self.target, self._options, self._tls)
            self._solver = solver_pb2_grpc.SolverStub(self._channel)
            self._admin = admin_pb2_grpc.AdminStub(self._channel)
        return self._solver, self._admin


class AsyncLocalClient(AsyncClient):
    """The ``"local"`` target for asyncio: a :class:`LocalClient` whose calls run in a worker thread."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, **options: Any) -> None:
        from ._local_client import LocalClient

        self._sync = LocalClient(timeout=timeout, **options)
        self.target = self._sync.target
        self.timeout = self._sync.timeout

    def __reduce__(self) -> tuple[Callable[..., AsyncClient], tuple[Any, ...]]:
        return (_reconnect, (LOCAL_TARGET, self.timeout, {"threads": self._sync.threads}))

    async def register(self, program: Program, *, pin: bool = False, timeout: float | None = None) -> str:
        return self._sync.register(program, pin=pin, timeout=timeout)  # no engine work: no thread needed

    async def solve(
        self,
        program: Program,
        domains: Any,
        priorities: Any | None = None,
        *,
        mode: Mode | str = Mode.SOLVE,
        node_limit: int | None = None,
        max_solutions: int = 1,
        timeout: float | None = None,
    ) -> SolveResult:
        return await asyncio.to_thread(
            self._sync.solve,
            program,
            domains,
            priorities,
            mode=mode,
            node_limit=node_limit,
            max_solutions=max_solutions,
            timeout=timeout,
        )

    async def release(self, program: Program | str, *, timeout: float | None = None) -> bool:
        return self._sync.release(program, timeout=timeout)

    async def program_info(self, program: Program | str, *, timeout: float | None = None) -> ProgramInfo:
        return self._sync.program_info(program, timeout=timeout)

    async def list_programs(self, *, timeout: float | None = None) -> list[ProgramInfo]:
        return self._sync.list_programs(timeout=timeout)

    async def device_status(self, *, timeout: float | None = None) -> DeviceStatus:
        return self._sync.device_status(timeout=timeout)

    async def stats(self, *, timeout: float | None = None) -> Stats:
        return self._sync.stats(timeout=timeout)

    async def self_test(self, *, timeout: float | None = None) -> SelfTestResult:
        return await asyncio.to_thread(self._sync.self_test, timeout=timeout)

    async def reset(self, *, timeout: float | None = None) -> ResetResult:
        return await asyncio.to_thread(self._sync.reset, timeout=timeout)

    async def close(self) -> None:
        self._sync.close()


def _reconnect(
    target: str, timeout: float, overrides: Mapping[str, Any], wait_for_daemon_s: float = 0.0,
    token: str | None = None, tls: _channel.TLS | None = None,
) -> AsyncClient:  # fmt: skip
    return connect_async(
        target, timeout=timeout, wait_for_daemon_s=wait_for_daemon_s, token=token, tls=tls, **overrides
    )
