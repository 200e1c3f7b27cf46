"""``connect(target)`` and the synchronous client: the daemon over gRPC, or the in-process engine.

Every call has a deadline: its ``timeout`` argument, else the client's default (``connect(timeout=...)``);
a ``solve`` that has to register its program first spends one deadline on both RPCs. ``solve`` registers a
program on first use (the id is computed here, so nothing is sent twice) and, when the daemon answers
``NOT_FOUND`` because it forgot the program (released, evicted, restarted), registers it again and retries
once. ``UNAVAILABLE`` is retried by gRPC itself (``_channel``) and then, with ``wait_for_daemon_s > 0``, by
the client until the daemon is back (a restart, a drain) or that many seconds have passed (``_retry``); every
error becomes one of the library's exceptions in :meth:`GrpcClient._attempt`, the only place a
``grpc.RpcError`` is caught.

Processes: a client is safe to share between threads but not across ``fork`` (gRPC's channels do not
survive it): a gRPC client used in a child process raises :class:`FpgacspError` saying so. Create clients in
the process that uses them; ``connect`` is cheap (no connection is made before the first call), and a
pickled client (e.g. sent to ``spawn`` workers) unpickles as a fresh connection to the same target.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from fpgacsp_proto.isa import Mode, Program
from fpgacsp_proto.v1 import admin_pb2, admin_pb2_grpc, solver_pb2, solver_pb2_grpc

from . import _channel, _codec, _retry
from ._errors import DeadlineExceededError, FpgacspError, NotFoundError, ServerError, from_rpc_error
from ._types import DeviceStatus, ProgramInfo, ResetResult, SelfTestResult, SolveResult, Stats

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT = 60.0
LOCAL_TARGET = "local"
NOT_FOUND_RETRIES = 6  # re-registrations of one Solve: one for a daemon that forgot, more for a fleet
ADMIN_METHODS = frozenset({"GetDeviceStatus", "SelfTest", "Reset", "GetStats"})


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
        from ._local_client import LocalClient

        return LocalClient(timeout=timeout, **channel_options)
    return GrpcClient(
        target,
        timeout=timeout,
        wait_for_daemon_s=wait_for_daemon_s,
        token=token,
        tls=tls,
        channel_options=channel_options,
    )


class Client(abc.ABC):
    """What every target offers, synchronously. Use as a context manager, or call :meth:`close`."""

    target: str
    timeout: float

    @abc.abstractmethod
    def register(self, program: Program, *, pin: bool = False, timeout: float | None = None) -> str:
        """Register ``program`` (idempotent) and return its id; ``pin`` keeps it from LRU eviction."""

    @abc.abstractmethod
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
        """Solve ``domains`` ``uint64[B, N]`` (optional ``priorities`` ``uint8[B, N, D]``); row b answers b.

        ``node_limit`` None means the target's default (the daemon's ``solve.default_node_limit``; 1,000,000
        for ``local``). Inputs are checked before any RPC and raise :class:`InvalidArgumentError`.
        """

    @abc.abstractmethod
    def release(self, program: Program | str, *, timeout: float | None = None) -> bool:
        """Unpin and forget a program (or program id); False when the target did not know it."""

    @abc.abstractmethod
    def program_info(self, program: Program | str, *, timeout: float | None = None) -> ProgramInfo:
        """The target's record of one program; :class:`NotFoundError` when it does not know it."""

    @abc.abstractmethod
    def list_programs(self, *, timeout: float | None = None) -> list[ProgramInfo]: ...

    @abc.abstractmethod
    def device_status(self, *, timeout: float | None = None) -> DeviceStatus: ...

    @abc.abstractmethod
    def stats(self, *, timeout: float | None = None) -> Stats: ...

    @abc.abstractmethod
    def self_test(self, *, timeout: float | None = None) -> SelfTestResult: ...

    @abc.abstractmethod
    def reset(self, *, timeout: float | None = None) -> ResetResult: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (or engine threads). Idempotent."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} target={self.target!r}>"

    def _deadline(self, timeout: float | None) -> float:
        """Absolute ``time.monotonic()`` deadline of one call."""
        return time.monotonic() + (self.timeout if timeout is None else _codec.check_timeout(timeout))


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
        self._ids = _codec.ProgramIds()
        self._daemons: int | None = None  # how many the target names (_channel.fleet_size), at the first registration
        self._pid = os.getpid()
        self._closed = False

    def __reduce__(self) -> tuple[Callable[..., Client], tuple[Any, ...]]:
        return (
            _reconnect,
            (self.target, self.timeout, self._overrides, self.wait_for_daemon_s, self._token, self._tls),
        )

    # --- data plane ------------------------------------------------------------------------------------

    def register(self, program: Program, *, pin: bool = False, timeout: float | None = None) -> str:
        program = _codec.check_program(program)
        return self._register(program, self._ids.id_of(program), pin, self._deadline(timeout))

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
        inputs = _codec.check_solve_inputs(program, domains, priorities, mode, node_limit, max_solutions)
        deadline = self._deadline(timeout)
        if inputs.batch == 0:
            return _codec.empty_result(program.num_vars)
        pid = self._ids.id_of(program)
        request = _codec.solve_request(pid, program, inputs)
        if pid not in self._ids.registered:
            self._register(program, pid, False, deadline)
        for retry in range(_retry.SOLVE_RETRIES_ON_INTERNAL + 1):
            try:
                response = self._solve_once(program, pid, request, deadline)
                break
            except ServerError as err:  # the device gave up on the batch: solving is pure, send it again
                if retry == _retry.SOLVE_RETRIES_ON_INTERNAL or not _retry.solve_failed_on_the_device(err):
                    raise
        return _codec.solve_result(response, program, inputs.batch)

    def _solve_once(self, program: Program, pid: str, request: Any, deadline: float) -> Any:
        # The daemon forgot the program (released, evicted, restarted), or, in a fleet, the daemon this Solve went to
        # never saw it: register again (idempotent; on every daemon of a fleet, see _retry.registrations) and retry.
        for attempt in range(NOT_FOUND_RETRIES + 1):
            try:
                return self._invoke("Solve", request, deadline)
            except NotFoundError:
                if attempt == NOT_FOUND_RETRIES:
                    raise
                self._ids.registered.discard(pid)
                self._register(program, pid, pid in self._ids.pinned, deadline, rounds=attempt + 1)
        raise AssertionError("unreachable")

    def release(self, program: Program | str, *, timeout: float | None = None) -> bool:
        pid = self._id_of(program)
        request = solver_pb2.ReleaseProgramRequest(program_id=pid)
        response = self._invoke("ReleaseProgram", request, self._deadline(timeout))
        self._ids.forget(pid)
        return bool(response.released)

    def program_info(self, program: Program | str, *, timeout: float | None = None) -> ProgramInfo:
        request = solver_pb2.GetProgramRequest(program_id=self._id_of(program))
        response = self._invoke("GetProgram", request, self._deadline(timeout))
        return _codec.program_info(response.info)

    def list_programs(self, *, timeout: float | None = None) -> list[ProgramInfo]:
        request = solver_pb2.ListProgramsRequest()
        response = self._invoke("ListPrograms", request, self._deadline(timeout))
        return [_codec.program_info(p) for p in response.programs]

    # --- admin plane -----------------------------------------------------------------------------------

    def device_status(self, *, timeout: float | None = None) -> DeviceStatus:
        request = admin_pb2.GetDeviceStatusRequest()
        return _codec.device_status(self._invoke("GetDeviceStatus", request, self._deadline(timeout)))

    def stats(self, *, timeout: float | None = None) -> Stats:
        request = admin_pb2.GetStatsRequest()
        return _codec.stats(self._invoke("GetStats", request, self._deadline(timeout)))

    def self_test(self, *, timeout: float | None = None) -> SelfTestResult:
        request = admin_pb2.SelfTestRequest()
        return _codec.self_test_result(self._invoke("SelfTest", request, self._deadline(timeout)))

    def reset(self, *, timeout: float | None = None) -> ResetResult:
        request = admin_pb2.ResetRequest()
        return _codec.reset_result(self._invoke("Reset", request, self._deadline(timeout)))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if os.getpid() == self._pid:  # a forked child must not touch the parent's channel
                self._channel.close()

    # --- internals -------------------------------------------------------------------------------------

    def _register(self, program: Program, pid: str, pin: bool, deadline: float, rounds: int = 1) -> str:
        request = _codec.register_request(program, pin)
        if self._daemons is None:
            self._daemons = _channel.fleet_size(self.target)
        for _ in range(_retry.registrations(self._daemons, rounds)):  # one per daemon of a fleet
            response = self._invoke("RegisterProgram", request, deadline)
            self._ids.mark_registered(_codec.check_registered_id(response, pid), pin)
        return pid

    def _id_of(self, program: Program | str) -> str:
        return _codec.check_program_id(program) if isinstance(program, str) else self._ids.id_of(program)

    def _invoke(self, method: str, request: Any, deadline: float) -> Any:
        """Run one RPC with what is left of ``deadline``, waiting out an unavailable daemon (``_retry``)."""
        wait = _retry.DaemonWait(self.target, self.wait_for_daemon_s, deadline)
        while True:
            try:
                return self._attempt(method, request, deadline)
            except _retry.HANDLED as err:
                backoff = wait.pause_after(err)  # raises when there is no waiting left
            time.sleep(backoff)
            wait.resume(_channel.wait_ready(self._channel, wait.left()))

    def _attempt(self, method: str, request: Any, deadline: float) -> Any:
        """One try of one RPC: the one place gRPC errors are converted."""
        self._check_usable()
        call = getattr(self._admin if method in ADMIN_METHODS else self._solver, method)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError(
                f"deadline passed before {method} was sent", grpc.StatusCode.DEADLINE_EXCEEDED, method
            )
        try:
            return call(request, timeout=remaining, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, method) from None

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
