"""Cross-cutting server concerns as grpc.aio interceptors: accounting of every call, and bodies that do not parse.

:class:`CallAccounting` comes first (outermost), so it sees every answer of the Solver and Admin services,
whoever gave it: the handler, the error boundary in ``service.rpc``, the token check
(:class:`fpgacspd.auth.AuthInterceptor`) or :class:`DecodeBoundary`. It keeps the server state's count of
running calls (the drain waits for it), times each call and counts its outcome by method and code.

grpc parses a request with the method's deserializer before any handler runs; when that raises, grpc answers
``UNKNOWN`` ("Unexpected DecodeError") and nothing of ours ever sees the call. :class:`DecodeBoundary` gives every
method of every service (Solver, Admin, health, reflection; unary and streaming) a deserializer that never raises:
a body that does not parse becomes an :class:`Undecodable`, answered ``INVALID_ARGUMENT`` naming the message type,
and counted like every other answer. Methods that parse their own body off the event loop (``raw_methods``,
``RegisterProgram``) get the bytes as they came.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError

from .program_body import undecodable
from .server_state import ServerState


class CallObserver(Protocol):
    """What the accounting reports (implemented by :class:`fpgacspd.metrics.Metrics`)."""

    def count_request(self, method: str, code: str) -> None: ...

    def observe_rpc(self, method: str, seconds: float) -> None: ...


class CallAccounting(grpc.aio.ServerInterceptor):
    """Running calls, time per call and answers by ``(method, code)`` for the methods under ``services``
    (full method paths start with ``/<service>/``); health and reflection are left alone."""

    def __init__(self, services: Collection[str], state: ServerState, observer: CallObserver) -> None:
        self.prefixes = tuple(f"/{s}/" for s in services)
        self.state = state
        self.observer = observer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        path = handler_call_details.method
        if handler is None or not path.startswith(self.prefixes):
            return handler
        method = path.rpartition("/")[2]
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._accounted(handler.unary_unary, method))
        if handler.stream_stream is not None:  # SolveStream: the call here, its items by the servicer
            return handler._replace(stream_stream=self._accounted_stream(handler.stream_stream, method))
        return handler

    def _accounted(self, behaviour: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with self._call(method, context):
                return await behaviour(request, context)

        return unary_unary

    def _accounted_stream(self, behaviour: Callable[..., Any], method: str) -> Callable[..., AsyncIterator[Any]]:
        async def stream_stream(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            with self._call(method, context):
                async for response in _as_async_iterator(behaviour(requests, context)):
                    yield response

        return stream_stream

    @contextlib.contextmanager
    def _call(self, method: str, context: grpc.aio.ServicerContext) -> Iterator[None]:
        """One call of ``method``: running while inside, then timed and counted by the code it ended with."""
        state, observer = self.state, self.observer
        started = state.call_started()
        code = "OK"
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):
            # the caller cancelled or its deadline passed: gRPC answers it; we only count it
            remaining = context.time_remaining()
            code = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
            raise
        except BaseException:
            # context.abort (the error boundary, a refusal) raised after setting the code; anything else is
            # grpc's own INTERNAL
            status = context.code()
            code = status.name if isinstance(status, grpc.StatusCode) else "INTERNAL"
            raise
        finally:
            state.call_ended()
            observer.observe_rpc(method, time.monotonic() - started)
            observer.count_request(method, code)


@dataclass(frozen=True)
class Undecodable:
    """A request body that did not parse as its method's message type."""

    message_type: str
    size: int
    error: str

    @property
    def details(self) -> str:
        return undecodable(self.size, self.error, self.message_type).message


def _lenient(parse: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    message_type = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
    name = message_type.full_name if message_type is not None else "the request message"

    def deserialize(data: bytes) -> Any:
        if parse is None:
            return data
        try:
            return parse(data)
        except (DecodeError, ValueError, TypeError) as e:  # upb raises DecodeError; others for odd inputs
            return Undecodable(name, len(data), str(e) or type(e).__name__)

    return deserialize


def _raw(data: bytes) -> bytes:
    return data


class DecodeBoundary(grpc.aio.ServerInterceptor):
    """``INVALID_ARGUMENT`` for bodies that do not parse, on every method (counted by :class:`CallAccounting`)."""

    def __init__(self, raw_methods: Collection[str] = ()) -> None:
        self.raw_methods = frozenset(raw_methods)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: grpc answers UNIMPLEMENTED
        method = handler_call_details.method.rpartition("/")[2]
        if method in self.raw_methods:
            return handler._replace(request_deserializer=_raw)
        lenient = _lenient(handler.request_deserializer)
        if handler.request_streaming:
            behaviour = "stream_stream" if handler.response_streaming else "stream_unary"
            wrapped = self._streaming(getattr(handler, behaviour), method, handler.response_streaming)
        else:
            behaviour = "unary_stream" if handler.response_streaming else "unary_unary"
            wrapped = self._unary(getattr(handler, behaviour), method, handler.response_streaming)
        return handler._replace(request_deserializer=lenient, **{behaviour: wrapped})

    async def _refuse(self, bad: Undecodable, context: grpc.aio.ServicerContext, method: str) -> None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad.details)

    def _unary(self, behaviour: Callable[..., Any], method: str, streaming_response: bool) -> Callable[..., Any]:
        if streaming_response:

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if isinstance(request, Undecodable):
                    await self._refuse(request, context, method)
                async for response in _as_async_iterator(behaviour(request, context)):
                    yield response

            return unary_stream

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await self._refuse(request, context, method)
            return await behaviour(request, context)

        return unary_unary

    def _streaming(self, behaviour: Callable[..., Any], method: str, streaming_response: bool) -> Callable[..., Any]:
        async def checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, Undecodable):
                    await self._refuse(request, context, method)
                yield request

        if streaming_response:

            async def stream_stream(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                async for response in _as_async_iterator(behaviour(checked(requests, context), context)):
                    yield response

            return stream_stream

        async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            return await behaviour(checked(requests, context), context)

        return stream_unary


async def _as_async_iterator(result: Any) -> AsyncIterator[Any]:
    """A streaming behaviour's responses, whether it is an async generator, a sync one, or a coroutine."""
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    elif hasattr(result, "__await__"):
        await result
    else:
        for item in result:
            yield item
