"""``connect(target)`` and the synchronous gRPC client; the ``"local"`` target is ``_local_client``.

Every call has a deadline: its ``timeout`` argument, else the client's default (``connect(timeout=...)``);
a ``solve`` that has to register its program first spends one deadline on both RPCs. What a call does
(register on first use, register again on ``NOT_FOUND``, wait out an unavailable daemon, decode) is
``_flow``, shared with the asyncio client; this client performs its operations by blocking: ``UNAVAILABLE`` is
retried by gRPC itself (``_channel``) and then, with ``wait_for_daemon_s > 0``, by the flow until the daemon is
back (a restart, a drain) or that many seconds have passed (``_retry``); every error becomes one of the
library's exceptions in :meth:`GrpcClient._attempt`, the only place a ``grpc.RpcError`` is caught.

Processes: a client is safe to share between threads but not across ``fork`` (gRPC's channels do not
survive it): a gRPC client used in a child process raises :class:`FpgacspError` saying so. Create clients in
the process that uses them; ``connect`` is cheap (no connection is made before the first call), and a
pickled client (e.g. sent to ``spawn`` workers) unpickles as a fresh connection to the same target.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, assert_never

import grpc
from fpgacsp_proto.isa import Mode, Program
from fpgacsp_proto.v1 import admin_pb2_grpc, solver_pb2_grpc

from . import _channel, _codec, _flow, _retry
from ._base import DEFAULT_TARGET, DEFAULT_TIMEOUT, LOCAL_TARGET, Client
from ._errors import FpgacspError, from_rpc_error
from ._flow import NOT_FOUND_RETRIES
from ._local_client import LocalClient
from ._types import DeviceStatus, Method, ProgramInfo, ResetResult, SelfTestResult, SolveResult, Stats

__all__ = ["NOT_FOUND_RETRIES", "Client", "GrpcClient", "connect"]

T = TypeVar("T")


def connect(
    target: str = DEFAULT_TARGET,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    wait_for_daemon_s: float = _retry.DEFAULT_WAIT_FOR_DAEMON_S,
    token: str | None = None,
    tls: _channel.TLS | bool | None = None,
    **channel_options: Any,
) -> Client:
    """A client for ``target``: ``"host:port"``, ``"unix:///path.sock"`` or ``"local"`` (in-process engine).

    ``timeout`` is the default deadline of every call, in seconds. ``wait_for_daemon_s``: how long an RPC that
    finds the daemon unavailable (restarting, draining, starting) keeps retrying before it raises
    :class:`UnavailableError`, within the call's deadline; the default 0 fails fast (after gRPC's own few
    quick retries). Training jobs and other long-running callers should pass e.g. 30 to ride through a
    daemon restart. ``channel_options`` are gRPC channel arguments, with or without their ``grpc.`` prefix
    (``keepalive_time_ms=60_000``); they override the defaults of ``fpgacsp._channel``. For ``"local"`` the only
    option is ``threads`` (engine threads; default one per CPU) and ``wait_for_daemon_s`` is accepted but moot.
    No connection is made here: an unreachable daemon shows on the first call.
    """
    target = _channel.check_target(target)
    timeout = _codec.check_timeout(timeout)
    wait_for_daemon_s = _retry.check_wait_for_daemon(wait_for_daemon_s)
    if target == LOCAL_TARGET:
        return LocalClient(timeout=timeout, **channel_options)
    return GrpcClient(
        target,
        timeout=timeout,
        wait_for_daemon_s=wait_for_daemon_s,
        token=token,
        tls=tls,
        channel_options=channel_options,
    )


class GrpcClient(Client):
    """The daemon over gRPC (``fpgacsp.v1.Solver`` and ``fpgacsp.v1.Admin``). Thread-safe; not fork-safe."""

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
        self._channel = _channel.sync_channel(
            target,
            _channel.channel_options(f"fpgacsp/{__version__}", self._overrides, _channel.is_fleet(target)),
            self._tls,
        )
        self._solver = solver_pb2_grpc.SolverStub(self._channel)
        self._admin = admin_pb2_grpc.AdminStub(self._channel)
        self._session = _flow.Session(target, self.wait_for_daemon_s)
        self._pid = os.getpid()
        self._closed = False

    def __reduce__(self) -> tuple[Callable[..., Client], tuple[Any, ...]]:
        return (
            _reconnect,
            (self.target, self.timeout, self._overrides, self.wait_for_daemon_s, self._token, self._tls),
        )

    # --- the calls: each one flow of _flow.Session, run by blocking ------------------------------------------

    def register(self, program: Program, *, pin: bool = False, timeout: float | None = None) -> str:
        return self._run(self._session.register(program, pin, self._deadline(timeout)))

    def solve(
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
        return self._run(self._session.solve(program, domains, priorities, mode, node_limit, max_solutions, deadline))

    def release(self, program: Program | str, *, timeout: float | None = None) -> bool:
        return self._run(self._session.release(program, self._deadline(timeout)))

    def program_info(self, program: Program | str, *, timeout: float | None = None) -> ProgramInfo:
        return self._run(self._session.program_info(program, self._deadline(timeout)))

    def list_programs(self, *, timeout: float | None = None) -> list[ProgramInfo]:
        return self._run(self._session.list_programs(self._deadline(timeout)))

    def device_status(self, *, timeout: float | None = None) -> DeviceStatus:
        return self._run(self._session.device_status(self._deadline(timeout)))

    def stats(self, *, timeout: float | None = None) -> Stats:
        return self._run(self._session.stats(self._deadline(timeout)))

    def self_test(self, *, timeout: float | None = None) -> SelfTestResult:
        return self._run(self._session.self_test(self._deadline(timeout)))

    def reset(self, *, timeout: float | None = None) -> ResetResult:
        return self._run(self._session.reset(self._deadline(timeout)))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if os.getpid() == self._pid:  # a forked child must not touch the parent's channel
                self._channel.close()

    # --- the I/O -----------------------------------------------------------------------------------------------

    def _invoke(self, method: str, request: Any, deadline: float) -> Any:
        """One RPC of any request, with the flow's waiting for the daemon and the one error boundary."""
        return self._run(self._session.call(Method(method), request, deadline))

    def _run(self, flow: _flow.Flow[T]) -> T:
        return _flow.run(flow, self._perform)

    def _perform(self, op: _flow.Op) -> Any:
        match op:
            case _flow.Attempt():
                return self._attempt(op)
            case _flow.Sleep(seconds=seconds):
                time.sleep(seconds)
                return None
            case _flow.WaitReady(timeout_s=timeout_s):
                return _channel.wait_ready(self._channel, timeout_s)
            case _flow.CountDaemons(target=target):
                return _channel.fleet_size(target)
            case _:
                assert_never(op)

    def _attempt(self, op: _flow.Attempt) -> Any:
        """One try of one RPC: the one place gRPC errors are converted."""
        self._check_usable()
        call = getattr(self._admin if op.method.admin else self._solver, op.method)
        timeout = op.timeout()
        try:
            return call(op.request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, op.method) from None

    def _check_usable(self) -> None:
        if self._closed:
            raise FpgacspError(f"this client of {self.target!r} is closed")
        if os.getpid() != self._pid:
            raise FpgacspError(
                f"this client of {self.target!r} was created in process {self._pid} and cannot be used after "
                "fork (gRPC channels do not survive it): call fpgacsp.connect() in the process that uses it, "
                "e.g. in a DataLoader's worker_init_fn, or use the 'spawn' start method"
            )


def _reconnect(
    target: str, timeout: float, overrides: Mapping[str, Any], wait_for_daemon_s: float = 0.0,
    token: str | None = None, tls: _channel.TLS | None = None,
) -> Client:  # fmt: skip
    """Unpickling a client connects afresh: a channel is process-local state."""
    return connect(target, timeout=timeout, wait_for_daemon_s=wait_for_daemon_s, token=token, tls=tls, **overrides)
