"""Thin grpc.aio servicers for ``fpgacsp.v1.Solver`` and ``fpgacsp.v1.Admin``: decode, call the core, encode.

Every exception becomes a gRPC status in ONE place, :func:`to_status` applied by the :func:`rpc`
decorator; :class:`fpgacspd.interceptors.CallAccounting` counts each answer by method and code for the metrics
and ``GetStats``. A body that
does not parse never reaches a servicer: :class:`fpgacspd.interceptors.DecodeBoundary` answers it, on every
method of every service.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from fpgacsp_proto.bitset import DomainError
from fpgacsp_proto.convert import program_to_proto
from fpgacsp_proto.isa import ProgramError
from fpgacsp_proto.v1 import admin_pb2, admin_pb2_grpc, solver_pb2, solver_pb2_grpc

from . import wire
from .core import Core
from .errors import DaemonError
from .logs import get_logger, log_event
from .solve_stream import StreamEnd, serve_stream

_log = get_logger("service")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


def to_status(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The error contract: our exceptions carry their code; anything else is an internal error."""
    if isinstance(error, DaemonError):
        return grpc.StatusCode[error.code], error.message
    if isinstance(error, ProgramError):
        return grpc.StatusCode.INVALID_ARGUMENT, f"program: {error}"
    if isinstance(error, DomainError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}: {error}"


# Methods whose bodies may be huge (a program of a million constraints is 11 MB and takes 0.1 s to parse): the
# handler gets the bytes and parses them off the event loop (interceptors.DecodeBoundary passes them through).
RAW_METHODS = frozenset({"RegisterProgram"})


def rpc(method: str) -> Callable[[Handler[Req, Resp]], Handler[Req, Resp]]:
    """Wrap a handler in the error boundary: its exceptions become statuses by :func:`to_status`. Counting and
    timing are :class:`fpgacspd.interceptors.CallAccounting`'s, which sees this status too."""

    def decorate(fn: Handler[Req, Resp]) -> Handler[Req, Resp]:
        @functools.wraps(fn)
        async def handler(self: _Servicer, request: Req, context: grpc.aio.ServicerContext) -> Resp:
            try:
                return await fn(self, request, context)
            except Exception as e:
                code, message = to_status(e)
                if code == grpc.StatusCode.INTERNAL:
                    log_event(_log, logging.ERROR, "rpc_failed", method=method, error=message, exc_info=True)
                await context.abort(code, message)
                raise AssertionError("unreachable: context.abort raises") from e

        return handler

    return decorate


def item_timeout(timeout_us: int, call_remaining: float | None) -> float | None:
    """Seconds a stream item may take: its own ``timeout_us`` (0 = none) within what is left of the call's."""
    own = timeout_us / 1e6 if timeout_us else None
    if own is None or call_remaining is None:
        return own if call_remaining is None else call_remaining
    return min(own, call_remaining)


class _Servicer:
    def __init__(self, core: Core) -> None:
        self.core = core


class SolverServicer(_Servicer, solver_pb2_grpc.SolverServicer):
    @rpc("RegisterProgram")
    async def RegisterProgram(  # noqa: N802 (gRPC method names)
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> solver_pb2.RegisterProgramResponse:
        entry, created = await self.core.register(request)  # a RAW_METHODS member: its bytes, parsed there
        return solver_pb2.RegisterProgramResponse(
            program_id=entry.program_id, created=created, info=wire.program_info(entry)
        )

    @rpc("GetProgram")
    async def GetProgram(  # noqa: N802
        self, request: solver_pb2.GetProgramRequest, context: grpc.aio.ServicerContext
    ) -> solver_pb2.GetProgramResponse:
        entry = self.core.registry.get(request.program_id)
        response = solver_pb2.GetProgramResponse(info=wire.program_info(entry))
        if request.include_program:
            response.program.CopyFrom(program_to_proto(entry.program))
        return response

    @rpc("ListPrograms")
    async def ListPrograms(  # noqa: N802
        self, request: solver_pb2.ListProgramsRequest, context: grpc.aio.ServicerContext
    ) -> solver_pb2.ListProgramsResponse:
        return solver_pb2.ListProgramsResponse(programs=[wire.program_info(e) for e in self.core.registry.list()])

    @rpc("ReleaseProgram")
    async def ReleaseProgram(  # noqa: N802
        self, request: solver_pb2.ReleaseProgramRequest, context: grpc.aio.ServicerContext
    ) -> solver_pb2.ReleaseProgramResponse:
        return solver_pb2.ReleaseProgramResponse(released=self.core.release(request.program_id))

    @rpc("Solve")
    async def Solve(  # noqa: N802
        self, request: solver_pb2.SolveRequest, context: grpc.aio.ServicerContext
    ) -> solver_pb2.SolveResponse:
        return await self._solve(request, context.time_remaining())

    async def SolveStream(  # noqa: N802
        self, requests: AsyncIterable[solver_pb2.SolveStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[solver_pb2.SolveStreamResponse]:
        async def answer(item: solver_pb2.SolveStreamRequest) -> solver_pb2.SolveStreamResponse:
            return await self._stream_item(item, context)

        async for got in serve_stream(requests, answer, self.core.batcher.refusing):
            if got is StreamEnd.REFUSING:
                await context.abort(grpc.StatusCode.UNAVAILABLE, self.core.batcher.refusal)
            elif not isinstance(got, StreamEnd):
                yield got

    async def _solve(self, request: solver_pb2.SolveRequest, timeout_s: float | None) -> solver_pb2.SolveResponse:
        self.core.check_available()
        entry = self.core.registry.use(request.program_id)
        batch = wire.decode_solve(request, entry, self.core.config.solve)
        answer = await self.core.solve(batch, timeout_s)
        return wire.encode_solve(answer, entry.domain_size)

    async def _stream_item(
        self, item: solver_pb2.SolveStreamRequest, context: grpc.aio.ServicerContext
    ) -> solver_pb2.SolveStreamResponse:
        """One item of a stream: a unary Solve's work and its error boundary, the status carried in the answer.
        Counted and timed as a ``Solve`` (the stream call itself is counted as ``SolveStream``)."""
        started, code = time.monotonic(), grpc.StatusCode.OK
        timeout_s = item_timeout(item.timeout_us, context.time_remaining())
        try:
            response = await self._solve(item.request, timeout_s)
            return solver_pb2.SolveStreamResponse(tag=item.tag, response=response)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the stream was cancelled: gRPC answers it, we only count
            raise
        except Exception as e:
            code, message = to_status(e)
            if code == grpc.StatusCode.INTERNAL:
                log_event(_log, logging.ERROR, "rpc_failed", method="SolveStream", error=message, exc_info=True)
            error = solver_pb2.ItemError(code=code.value[0], message=message)
            return solver_pb2.SolveStreamResponse(tag=item.tag, error=error)
        finally:
            self.core.metrics.observe_rpc("Solve", time.monotonic() - started)
            self.core.metrics.count_request("Solve", code.name)


class AdminServicer(_Servicer, admin_pb2_grpc.AdminServicer):
    @rpc("GetDeviceStatus")
    async def GetDeviceStatus(  # noqa: N802
        self, request: admin_pb2.GetDeviceStatusRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DeviceStatus:
        core = self.core
        batching = core.config.batching
        return wire.device_status(
            await core.device_info(), int(core.state), core.version, core.uptime_s(), core.batcher.queue_depth,
            len(core.registry), batching.max_batch, batching.max_delay_us,
        )  # fmt: skip

    @rpc("SelfTest")
    async def SelfTest(  # noqa: N802
        self, request: admin_pb2.SelfTestRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.SelfTestResponse:
        return wire.self_test_response(await self.core.self_test())

    @rpc("Reset")
    async def Reset(  # noqa: N802
        self, request: admin_pb2.ResetRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ResetResponse:
        start = time.perf_counter()
        report = await self.core.reset()
        return admin_pb2.ResetResponse(
            self_test_passed=report.passed, duration_us=round((time.perf_counter() - start) * 1e6)
        )

    @rpc("GetStats")
    async def GetStats(  # noqa: N802
        self, request: admin_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.Stats:
        core = self.core
        counts = core.metrics.request_counts()
        return wire.stats(core.batcher.stats, counts, core.batcher.queue_depth, len(core.registry))
