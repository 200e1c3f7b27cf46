"""``connect_async(target)``: the same client as coroutines, for asyncio programs.

The same calls as ``_client`` because they are the same flows (``_flow``: deadline on every call, register on
first use, register again on ``NOT_FOUND``, ``UNAVAILABLE`` retried by gRPC's policy and then for up to
``wait_for_daemon_s``), here performed by awaiting; errors are converted in :meth:`GrpcAsyncClient._attempt`.
The gRPC channel is created on the first call, inside the event loop that makes it, since a ``grpc.aio``
channel belongs to one loop; ``connect_async`` itself does no I/O and can run outside a loop. Cancelling
the awaiting task cancels the RPC (the daemon drops the request before it reaches the device) and raises
``asyncio.CancelledError`` as asyncio expects; it is never turned into :class:`fpgacsp.CancelledError`.
The ``"local"`` target runs the engine in a worker thread (``asyncio.to_thread``; the engine releases the
GIL), so the loop stays responsive.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, assert_never

import grpc
import grpc.aio
from fpgacsp_proto.isa import Mode, Program
from fpgacsp_proto.v1 import admin_pb2_grpc, solver_pb2_grpc

from . import _channel, _codec, _flow, _retry
from ._base import DEFAULT_TARGET, DEFAULT_TIMEOUT, LOCAL_TARGET, AsyncClient
from ._errors import FpgacspError, from_rpc_error
from ._local_client import LocalClient
from ._stream import SolveStreamMux
from ._types import DeviceStatus, Method, ProgramInfo, ResetResult, SelfTestResult, SolveResult, Stats

__all__ = ["AsyncClient", "AsyncLocalClient", "GrpcAsyncClient", "connect_async"]

T = TypeVar("T")


def connect_async(
    target: str = DEFAULT_TARGET,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    wait_for_daemon_s: float = _retry.DEFAULT_WAIT_FOR_DAEMON_S,
    token: str | None = None,
    tls: _channel.TLS | bool | None = None,
    streaming: bool = False,
    **channel_options: Any,
) -> AsyncClient:
    """The asyncio twin of :func:`fpgacsp.connect` (same targets, same options); use ``async with``.

    ``streaming=True`` sends the Solves of every task of this client as items of one ``SolveStream`` call
    (``_stream``) instead of one unary call each: the same answers and errors, at a fraction of gRPC's
    per-call cost when many small Solves are in flight at once (ignored by the ``"local"`` target)."""
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
        streaming=streaming,
        channel_options=channel_options,
    )


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
        streaming: bool = False,
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
        self.streaming = bool(streaming)
        self._stream: SolveStreamMux | None = None
        self._session = _flow.Session(target, self.wait_for_daemon_s)
        self._pid = os.getpid()
        self._closed = False

    def __reduce__(self) -> tuple[Callable[..., AsyncClient], tuple[Any, ...]]:
        return (
            _reconnect,
            (
                self.target,
                self.timeout,
                self._overrides,
                self.wait_for_daemon_s,
                self._token,
                self._tls,
                self.streaming,
            ),
        )

    # --- the calls: each one flow of _flow.Session, run by awaiting ------------------------------------------

    async def register(self, program: Program, *, pin: bool = False, timeout: float | None = None) -> str:
        return await self._run(self._session.register(program, pin, self._deadline(timeout)))

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
        deadline = self._deadline(timeout)
        flow = self._session.solve(program, domains, priorities, mode, node_limit, max_solutions, deadline)
        return await self._run(flow)

    async def release(self, program: Program | str, *, timeout: float | None = None) -> bool:
        return await self._run(self._session.release(program, self._deadline(timeout)))

    async def program_info(self, program: Program | str, *, timeout: float | None = None) -> ProgramInfo:
        return await self._run(self._session.program_info(program, self._deadline(timeout)))

    async def list_programs(self, *, timeout: float | None = None) -> list[ProgramInfo]:
        return await self._run(self._session.list_programs(self._deadline(timeout)))

    async def device_status(self, *, timeout: float | None = None) -> DeviceStatus:
        return await self._run(self._session.device_status(self._deadline(timeout)))

    async def stats(self, *, timeout: float | None = None) -> Stats:
        return await self._run(self._session.stats(self._deadline(timeout)))

    async def self_test(self, *, timeout: float | None = None) -> SelfTestResult:
        return await self._run(self._session.self_test(self._deadline(timeout)))

    async def reset(self, *, timeout: float | None = None) -> ResetResult:
        return await self._run(self._session.reset(self._deadline(timeout)))

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._channel is not None and os.getpid() == self._pid:
                if self._stream is not None:
                    await self._stream.close()
                await self._channel.close()

    # --- the I/O -----------------------------------------------------------------------------------------------

    async def _run(self, flow: _flow.Flow[T]) -> T:
        return await _flow.run_async(flow, self._perform)

    async def _perform(self, op: _flow.Op) -> Any:
        match op:
            case _flow.Attempt():
                return await self._attempt(op)
            case _flow.Sleep(seconds=seconds):
                await asyncio.sleep(seconds)
                return None
            case _flow.WaitReady(timeout_s=timeout_s):
                assert self._channel is not None  # created by the attempt that failed
                return await _channel.aio_wait_ready(self._channel, timeout_s, lambda: self._closed)
            case _flow.CountDaemons(target=target):  # a dns: target is resolved: not on the event loop
                return await asyncio.to_thread(_channel.fleet_size, target)
            case _:
                assert_never(op)

    async def _attempt(self, op: _flow.Attempt) -> Any:
        """One try of one RPC: the one place gRPC errors are converted."""
        solver, admin = self._stubs()
        call = getattr(admin if op.method.admin else solver, op.method)
        timeout = op.timeout()
        if op.method == Method.SOLVE and self.streaming:
            return await self._solve_stream(solver).solve(op.request, timeout)  # converts its own errors
        try:
            return await call(op.request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:  # grpc.aio.AioRpcError included
            raise from_rpc_error(exc, op.method) from None

    def _solve_stream(self, solver: solver_pb2_grpc.SolverStub) -> SolveStreamMux:
        if self._stream is None:
            self._stream = SolveStreamMux(lambda: solver.SolveStream(metadata=self._metadata))
        return self._stream

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
    token: str | None = None, tls: _channel.TLS | None = None, streaming: bool = False,
) -> AsyncClient:  # fmt: skip
    return connect_async(
        target,
        timeout=timeout,
        wait_for_daemon_s=wait_for_daemon_s,
        token=token,
        tls=tls,
        streaming=streaming,
        **overrides,
    )
