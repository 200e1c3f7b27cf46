"""The asyncio client's Solves over one ``SolveStream`` call (``connect_async(target, streaming=True)``).

Every Solve attempt of the client's tasks becomes one tagged item of a single long-lived bidirectional call,
and its answer is routed back by tag, so many small concurrent Solves pay gRPC's per-call cost once instead
of once each (bench/results/serve.md measures the difference). Only the transport changes: each attempt still
comes from the same flow (``_flow.Session.solve``: register on first use, register again on ``NOT_FOUND``,
retries, one deadline), and an item's error is the status a unary Solve would have answered, converted by the
same ``_errors.from_code``.

When the call itself fails (the daemon restarts or drains, the connection drops), every item waiting on it
fails with the call's error (``UNAVAILABLE`` for a drain: the flow waits for a daemon and sends the item
again), and the next attempt opens a new call. An item whose attempt times out or is cancelled stops being
awaited here; the daemon drops it by its own ``timeout_us`` (sent with the item), or answers it and the
answer is discarded.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from fpgacsp_proto.v1 import solver_pb2

from ._errors import DeadlineExceededError, FpgacspError, from_code, from_rpc_error
from ._types import Method

OpenCall = Callable[[], grpc.aio.StreamStreamCall]  # the stub's SolveStream with the client's metadata


class SolveStreamMux:
    """Solve attempts of one event loop multiplexed over one ``SolveStream`` call, opened on first use."""

    def __init__(self, open_call: OpenCall) -> None:
        self._open_call = open_call
        self._call: grpc.aio.StreamStreamCall | None = None
        self._reader: asyncio.Task[None] | None = None
        # tag -> (the call the item went on, its answer)
        self._pending: dict[int, tuple[grpc.aio.StreamStreamCall, asyncio.Future[solver_pb2.SolveStreamResponse]]] = {}
        self._tags = itertools.count(1)
        self._write_lock = asyncio.Lock()  # grpc.aio allows one write in progress per call

    @property
    def pending(self) -> int:
        """Items sent (or being sent) whose answers have not come back."""
        return len(self._pending)

    async def solve(self, request: solver_pb2.SolveRequest, timeout: float) -> solver_pb2.SolveResponse:
        """One Solve attempt as an item: its SolveResponse, or the library error a unary call would raise."""
        call = self._ensure_call()
        tag = next(self._tags)
        answer: asyncio.Future[solver_pb2.SolveStreamResponse] = asyncio.get_running_loop().create_future()
        self._pending[tag] = (call, answer)
        item = solver_pb2.SolveStreamRequest(tag=tag, request=request, timeout_us=math.ceil(timeout * 1e6))
        try:
            async with asyncio.timeout(timeout):
                try:
                    async with self._write_lock:
                        await call.write(item)
                except grpc.RpcError as exc:  # the call ended before the item went out
                    self._call_ended(call, from_rpc_error(exc, Method.SOLVE))
                except asyncio.InvalidStateError:  # grpc.aio: the call already finished
                    self._call_ended(call, None)
                got = await answer
        except TimeoutError:
            raise DeadlineExceededError(
                f"deadline passed after {timeout:.3g} s waiting for the answer", grpc.StatusCode.DEADLINE_EXCEEDED,
                Method.SOLVE,
            ) from None  # fmt: skip
        finally:
            self._pending.pop(tag, None)
        if got.WhichOneof("answer") == "response":
            return got.response
        return self._raise(got)

    async def close(self) -> None:
        """End the call; items still waiting fail with :class:`FpgacspError`."""
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
            closed = FpgacspError("the client was closed before the daemon answered", None, Method.SOLVE)
            self._fail_pending(call, closed)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    # --- internals ---------------------------------------------------------------------------------------------

    def _ensure_call(self) -> grpc.aio.StreamStreamCall:
        if self._call is None or self._call.done():
            self._call = call = self._open_call()
            self._reader = asyncio.get_running_loop().create_task(self._read(call))
        return self._call

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        """Route each answer to its item until the call ends, then fail whatever is still waiting on it."""
        error: FpgacspError | None = None
        try:
            while True:
                got = await call.read()
                if got is grpc.aio.EOF:
                    break
                _, answer = self._pending.get(got.tag, (None, None))
                if answer is not None and not answer.done():
                    answer.set_result(got)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc, Method.SOLVE)
        except asyncio.CancelledError:
            pass
        self._call_ended(call, error)

    def _call_ended(self, call: grpc.aio.StreamStreamCall, error: FpgacspError | None) -> None:
        if self._call is call:
            self._call = None
        ended = error or from_code(grpc.StatusCode.UNAVAILABLE, "the SolveStream call ended", Method.SOLVE)
        self._fail_pending(call, ended)

    def _fail_pending(self, call: grpc.aio.StreamStreamCall, error: FpgacspError) -> None:
        """Fail the items still waiting on ``call`` (not those already on a newer one)."""
        for on, answer in self._pending.values():
            if on is call and not answer.done():
                answer.set_exception(error)

    @staticmethod
    def _raise(got: Any) -> Any:
        code = _CODES.get(got.error.code, grpc.StatusCode.UNKNOWN)
        raise from_code(code, got.error.message, Method.SOLVE)


_CODES = {code.value[0]: code for code in grpc.StatusCode}
