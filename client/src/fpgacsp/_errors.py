"""The library's exceptions, and the one function that turns a gRPC error into one of them.

Callers never see ``grpc.RpcError``: each gRPC client funnels every RPC through a single ``_attempt`` that calls
:func:`from_rpc_error`, and the ``local`` target turns the daemon code's errors into the same classes with
:func:`from_code`, so the mapping below is the whole story (tritonclient's one-boundary rule). The
server's message is kept verbatim (it names the field and the problem, per the error contract in
``solver.proto``) and the gRPC code is kept on the exception for callers that want it.

Several classes also derive from the matching builtin, so generic code keeps working:
``InvalidArgumentError`` is a ``ValueError`` (client-side input checks raise it too, before any RPC),
``DeadlineExceededError`` a ``TimeoutError``, ``UnavailableError`` a ``ConnectionError``.
"""

from __future__ import annotations

import grpc

from ._types import Method


class FpgacspError(Exception):
    """Base of every error this library raises for a failed call.

    ``code`` is the gRPC status code (None for an error raised before any RPC), ``details`` the server's
    message, ``method`` the RPC that failed (e.g. ``"Solve"``; empty for client-side errors).
    """

    def __init__(self, details: str, code: grpc.StatusCode | None = None, method: str = "") -> None:
        super().__init__(details)
        self.details = details
        self.code = code
        self.method = method

    def __str__(self) -> str:
        if self.code is None:
            return self.details
        return f"{self.method or 'call'} failed with {self.code.name}: {self.details}"

    def __reduce__(self) -> tuple[type[FpgacspError], tuple[str, grpc.StatusCode | None, str]]:
        # exceptions cross process boundaries (DataLoader workers, multiprocessing): keep every field
        return (type(self), (self.details, self.code, self.method))


class InvalidArgumentError(FpgacspError, ValueError):
    """Bad input: a malformed program, bitsets or priorities of the wrong size or with stray bits, bad options.

    Raised by the client's own checks before any RPC (``code`` None) and for ``INVALID_ARGUMENT`` answers.
    """


class NotFoundError(FpgacspError):
    """``NOT_FOUND``: the program id is unknown to the daemon (never registered, released or evicted).

    ``solve`` handles this itself (it re-registers and retries once); it surfaces only from ``get``-style
    calls or when the program vanished again straight after re-registration.
    """


class ResourceExhaustedError(FpgacspError):
    """``RESOURCE_EXHAUSTED``: the daemon refused the work for lack of room."""


class QueueFullError(ResourceExhaustedError):
    """The daemon's queue is full (answered at once). Back off and retry, or send larger batches."""


class ProgramLimitError(ResourceExhaustedError):
    """A program exceeds the daemon's size limits, or its registry is full of pinned programs."""


class DeadlineExceededError(FpgacspError, TimeoutError):
    """``DEADLINE_EXCEEDED``: the call's deadline passed (the daemon dropped the request unsolved)."""


class CancelledError(FpgacspError):
    """``CANCELLED``: the call was cancelled. Not ``asyncio.CancelledError``, which is never converted."""


class UnavailableError(FpgacspError, ConnectionError):
    """``UNAVAILABLE`` after gRPC's own retries: the daemon is unreachable, draining or resetting."""


class UnauthenticatedError(FpgacspError, PermissionError):
    """``UNAUTHENTICATED``: the daemon wants a token and got none, or rejected the one sent (``token=`` of
    :func:`fpgacsp.connect`, or ``FPGACSP_TOKEN``)."""


class PermissionDeniedError(FpgacspError, PermissionError):
    """``PERMISSION_DENIED``: the token's role may not call this method (``Admin.Reset`` needs ``admin``)."""


class ServerError(FpgacspError):
    """``INTERNAL``/``UNKNOWN`` and the like, or a response that breaks the protocol: a daemon-side fault."""


_BY_CODE: dict[grpc.StatusCode, type[FpgacspError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.INTERNAL: ServerError,
    grpc.StatusCode.UNKNOWN: ServerError,
    grpc.StatusCode.DATA_LOSS: ServerError,
    grpc.StatusCode.UNIMPLEMENTED: ServerError,
}

# RESOURCE_EXHAUSTED means different things per method (solver.proto): say which
_EXHAUSTED_BY_METHOD: dict[str, type[ResourceExhaustedError]] = {
    Method.SOLVE: QueueFullError,
    Method.REGISTER_PROGRAM: ProgramLimitError,
}


# What a failed TLS handshake looks like in gRPC's UNAVAILABLE details, and what to tell the person who hit it.
_TLS_HINTS = (
    ("CERTIFICATE_VERIFY_FAILED", "TLS: the daemon's certificate not trusted (signed by another CA than the one "
     "given as tls=fpgacsp.TLS(ca=...), expired, or issued for another name)"),
    ("WRONG_VERSION_NUMBER", "TLS: the daemon does not speak TLS on this address (drop tls=, or check the port)"),
    ("CERTIFICATE_REQUIRED", "TLS: the daemon requires a client certificate (tls=fpgacsp.TLS(cert=..., key=...))"),
    ("Socket closed", "the daemon closed the connection: it may require TLS (tls=fpgacsp.TLS(ca=...)) or a client "
     "certificate, or it is stopping"),
)  # fmt: skip


def _with_hint(details: str) -> str:
    hint = next((text for marker, text in _TLS_HINTS if marker in details), None)
    return f"{hint}: {details}" if hint else details


def from_rpc_error(err: grpc.RpcError, method: str) -> FpgacspError:
    """The library exception for a failed RPC, keeping the server's message and the code.

    Works for the sync stack's errors and ``grpc.aio.AioRpcError`` alike (both have ``code()`` and
    ``details()``); an error object without them (gRPC internals) becomes a :class:`ServerError`.
    """
    code_fn, details_fn = getattr(err, "code", None), getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else None
    details = (details_fn() if callable(details_fn) else None) or str(err) or "no details"
    if not isinstance(code, grpc.StatusCode):
        return ServerError(details, grpc.StatusCode.UNKNOWN, method)
    if code == grpc.StatusCode.UNAVAILABLE:
        details = _with_hint(details)
    return from_code(code, details, method)


def from_code(code: grpc.StatusCode, details: str, method: str) -> FpgacspError:
    """The library exception for an answer with status ``code``: the one mapping, shared by the gRPC clients
    (through :func:`from_rpc_error`) and the ``local`` target (whose daemon code raises its own errors)."""
    cls = _BY_CODE.get(code, FpgacspError)
    if cls is ResourceExhaustedError:
        cls = _EXHAUSTED_BY_METHOD.get(method, ResourceExhaustedError)
    return cls(details, code, method)
