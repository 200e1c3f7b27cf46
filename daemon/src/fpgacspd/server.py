"""The gRPC server and the daemon's life: listeners, health, reflection, metrics, signals, drain, systemd.

Start: bind every ``server.listen`` address (log ``listening`` with the resolved port), start the metrics
endpoint (``metrics_listening``), run the device self-test, then mark health SERVING, tell systemd
``READY=1`` and log ``ready``. Signals are handled in ONE place (:meth:`Daemon.run`): the first SIGTERM,
SIGINT or SIGQUIT drains (health NOT_SERVING, ``STOPPING=1``, new work refused with UNAVAILABLE, queued and
in-flight work finished within ``shutdown_grace_s``) and exits 0; a second one cuts the drain short (what is
still queued is answered UNAVAILABLE, a batch on the device is aborted) and exits 0 too. SIGHUP re-reads the
TLS certificates and the token file and SIGUSR1 logs the daemon's state; neither interrupts serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import grp
import logging
import os
import resource
import signal
import socket
import threading
import time
from typing import Any

import grpc
from fpgacsp_proto.limits import MAX_MESSAGE_BYTES
from fpgacsp_proto.v1 import admin_pb2, admin_pb2_grpc, solver_pb2, solver_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from . import sdnotify
from .auth import AuthInterceptor, TokenFileError, TokenTable
from .config import Config
from .core import Core
from .device import DeviceInfo, DeviceState, DeviceWorker, TransportError, make_device
from .interceptors import CallAccounting, DecodeBoundary
from .logs import get_logger, log_event
from .metrics import Metrics
from .server_state import ServerPhase, ServerState
from .service import RAW_METHODS, AdminServicer, SolverServicer
from .tls import ServerTLS, TLSConfigError

_log = get_logger("server")

# gRPC options, in one place. MAX_MESSAGE_BYTES (128 MiB) is the client's too: fpgacsp_proto.limits says why.
SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),  # a second daemon on a taken port must fail to bind, not share the port
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
)
SOLVER_SERVICE = solver_pb2.DESCRIPTOR.services_by_name["Solver"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
HEALTH_SERVICES = ("", SOLVER_SERVICE, ADMIN_SERVICE)
FLUSH_GRACE_S = 0.2  # after a drain, for grpc to send the answers the handlers returned
QUIET_S = 0.1  # after a drain, stop once no call arrived for this long ...
LAME_DUCK_MAX_S = 2.0  # ... or after this long (within shutdown_grace_s)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class SignalAction(enum.Enum):
    """What a signal makes the daemon do."""

    STOP = "stop"  # drain, then exit 0 (a second one cuts the drain short)
    RELOAD = "reload"  # SIGHUP: re-read what can change without a restart
    REPORT = "report"  # SIGUSR1: log the daemon's state


SIGNAL_ACTIONS: dict[signal.Signals, SignalAction] = {
    **{sig: SignalAction.STOP for sig in STOP_SIGNALS},
    signal.SIGHUP: SignalAction.RELOAD,
    signal.SIGUSR1: SignalAction.REPORT,
}


class StartupError(RuntimeError):
    """The daemon could not start (an address could not be bound, ...); the message says which."""


class Daemon:
    """The process's life in phases (:class:`ServerPhase`): constructing it opens nothing; :meth:`start` attaches
    the device, binds, self-tests and announces; :meth:`shutdown` drains. Its bookkeeping is ``self.state``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.state = ServerState()
        self.health = HealthServicer()
        self.server: grpc.aio.Server | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self.tokens: TokenTable | None = None  # server.auth_tokens, re-read on SIGHUP
        self.tls: ServerTLS | None = None  # server.tls_*, re-read on SIGHUP
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._core: Core | None = None

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("daemon: the device is not attached yet (start() attaches it)")
        return self._core

    @property
    def worker(self) -> DeviceWorker:
        return self.core.worker

    @property
    def addresses(self) -> list[str]:
        return self.state.addresses

    @property
    def metrics_address(self) -> str | None:
        return self.state.metrics_address

    async def _attach(self) -> None:
        """The first startup phase: open the device (a card, its simulator warming its kernel, its RTL being
        built) off the event loop, and wire the core around it. A device that cannot be opened stops startup."""
        self.state.enter(ServerPhase.ATTACHING)
        loop = asyncio.get_running_loop()
        try:
            device = await loop.run_in_executor(None, lambda: make_device(self.config.device, events=self.metrics))
        except TransportError as e:  # a misconfigured host, or not our card
            raise StartupError(str(e)) from e
        self.metrics.set_device_clock(device.driver.caps.clock_khz * 1000)  # for projected hardware time
        self._core = Core(self.config, DeviceWorker(device), self.metrics)

    # -- the one place signals are handled ------------------------------------------------------------

    async def run(self, restore_signals: bool = True) -> int:
        """Serve until SIGTERM/SIGINT; the exit status: 0 after a drain, 1 if startup failed.

        Handlers go through ``signal.signal`` rather than the loop's ``add_signal_handler``, because closing
        the loop would put back the default action: as a process (``restore_signals=False``) a late SIGTERM
        while the interpreter exits is then ignored instead of turning exit 0 into death by signal; embedded
        (tests), the previous handlers come back.
        """
        loop = asyncio.get_running_loop()
        installed = threading.current_thread() is threading.main_thread()
        previous: dict[signal.Signals, Any] = {}
        if installed:
            for sig in SIGNAL_ACTIONS:
                previous[sig] = signal.signal(sig, lambda n, _f: loop.call_soon_threadsafe(self._on_signal, n))
        try:
            try:
                await self.start()
            except StartupError as e:
                log_event(_log, logging.CRITICAL, "startup_failed", error=str(e))
                await self._close()
                return 1
            await self._stop.wait()
            return 0 if await self.shutdown() else 1
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if restore_signals else signal.SIG_IGN)

    def _on_signal(self, signum: int) -> None:
        sig = signal.Signals(signum)
        action = SIGNAL_ACTIONS.get(sig, SignalAction.STOP)
        if action == SignalAction.RELOAD:
            log_event(_log, logging.INFO, "signal", signal=sig.name, action=action.value, reloaded=self.reload())
            return
        if action == SignalAction.REPORT:
            log_event(_log, logging.INFO, "signal", signal=sig.name, action=action.value, **self.report())
            return
        self.state.stop_signals += 1
        log_event(_log, logging.INFO, "signal", signal=sig.name, action=action.value, count=self.state.stop_signals)
        self._stop.set()
        if self.state.stop_signals > 1:
            self._force.set()

    def reload(self) -> list[str]:
        """What SIGHUP re-reads: the TLS certificates (new handshakes use them) and the token file (the next call
        sees it); a file that cannot be used keeps the old and is logged. Returns what was re-read. Calls in flight
        and established connections are not touched."""
        reloaded = []
        if self.tls is not None:
            try:
                self.tls.reload()
                reloaded.append("tls")
            except TLSConfigError as e:
                log_event(_log, logging.ERROR, "reload_failed", what="tls", error=str(e))
        path = self.config.server.auth_tokens
        if path:
            try:
                self.tokens = TokenTable.load(path)
                reloaded.append("auth_tokens")
            except TokenFileError as e:
                log_event(_log, logging.ERROR, "reload_failed", what="auth_tokens", error=str(e))
        return reloaded

    def _restrict_socket(self, address: str) -> None:
        """grpc creates a unix socket file with the umask's permissions (often 0777 & ~022: anyone on the host may
        connect); the daemon sets ``server.unix_socket_mode`` (0660) and ``unix_socket_group`` on it."""
        path = _socket_path(address)
        cfg = self.config.server
        try:
            if cfg.unix_socket_group:
                os.chown(path, -1, grp.getgrnam(cfg.unix_socket_group).gr_gid)
            os.chmod(path, int(cfg.unix_socket_mode, 8))
        except (OSError, KeyError) as e:
            raise StartupError(
                f"server.listen: cannot set mode {cfg.unix_socket_mode} / group {cfg.unix_socket_group or '(own)'} "
                f"on {path} ({e})"
            ) from e

    def report(self) -> dict[str, Any]:
        """The daemon's state in one record (SIGUSR1 logs it): for an operator looking at a live process."""
        if self._core is None:
            return {"phase": self.state.phase.value, "threads": threading.active_count()}
        stats = self.core.batcher.stats
        return {
            "phase": self.state.phase.value,
            "state": self.worker.state.name.lower(),
            "device_busy_s": round(self.worker.busy_s, 3),
            "queue_depth": self.core.batcher.queue_depth,
            "active_rpcs": self.state.active_rpcs,
            "programs": len(self.core.registry),
            "submitted": stats.submitted,
            "answered": stats.answered,
            "batches": stats.batches,
            "threads": threading.active_count(),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "uptime_s": round(self.core.uptime_s(), 3),
        }

    def request_stop(self) -> None:
        """What SIGTERM does, for embedding and tests."""
        self._on_signal(signal.SIGTERM)

    # -- start ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        for service in HEALTH_SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._attach()
        self.state.enter(ServerPhase.STARTING)
        self.core.state_listeners.append(self._device_state_changed)
        if self.config.server.auth_tokens:
            try:
                self.tokens = TokenTable.load(self.config.server.auth_tokens)
            except TokenFileError as e:
                raise StartupError(str(e)) from e
        # the accounting sees every answer; who may call comes next (a refused call is never parsed), then the
        # bodies that do not parse
        accounting = CallAccounting((SOLVER_SERVICE, ADMIN_SERVICE), self.state, self.metrics)
        auth = AuthInterceptor(lambda: self.tokens)
        boundary = DecodeBoundary(RAW_METHODS)
        server = grpc.aio.server(options=list(SERVER_OPTIONS), interceptors=[accounting, auth, boundary])
        solver_pb2_grpc.add_SolverServicer_to_server(SolverServicer(self.core), server)
        admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(self.core), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SOLVER_SERVICE, ADMIN_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            server,
        )  # fmt: skip
        self.server = server
        cfg = self.config.server
        if cfg.tls_cert:
            try:
                self.tls = ServerTLS(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
            except TLSConfigError as e:
                raise StartupError(str(e)) from e
        for address in cfg.listen:
            self.addresses.append(_bind(server, address, self.tls))
        await server.start()
        for address in self.addresses:
            if address.startswith("unix:"):
                self._restrict_socket(address)
            log_event(_log, logging.INFO, "listening", address=address, pid=os.getpid())
        if self.config.server.metrics_listen:
            await self._start_metrics(self.config.server.metrics_listen)
        self.core.start()
        report = await self.core.self_test()
        log_event(
            _log, logging.INFO if report.passed else logging.ERROR, "self_test", passed=report.passed,
            duration_ms=round(report.duration_s * 1e3, 3),
            failed=[f"{c.name}: {c.detail}" for c in report.cases if not c.passed],
        )  # fmt: skip
        if self.config.systemd.watchdog_usec:
            self._watchdog = asyncio.get_running_loop().create_task(self._watchdog_loop())
        self.state.enter(ServerPhase.SERVING)
        # Everything allocated so far (grpc, numba's compiled kernels, the config: about 124,000 objects) lives as
        # long as the process. Left to the cyclic collector, each full pass walks all of it (25 ms on this
        # machine, far longer when the cores are busy) with the GIL held: a status or health check then waits.
        gc.freeze()
        if report.passed:  # else FAILED: Admin answers, Solve is UNAVAILABLE, health NOT_SERVING, recovery retries
            self._notify_ready()

    def _notify_ready(self) -> None:
        """READY=1 and the ``ready`` line, once: after the startup self-test, or when a device that failed it
        was recovered later (a unit waits for READY=1)."""
        if self.state.ready_notified:
            return
        self.state.ready_notified = True
        sdnotify.notify(self.config.systemd.notify_socket, "READY=1\nSTATUS=serving")
        log_event(
            _log, logging.INFO, "ready", addresses=self.addresses, metrics_address=self.metrics_address,
            backend=self.worker.device.backend, version=self.core.version, pid=os.getpid(),
        )  # fmt: skip

    async def _start_metrics(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        cfg = self.config.server
        try:
            bound_host, bound_port = await self.metrics.serve(
                host.strip("[]"),
                int(port),
                cfg.metrics_max_connections,
                cfg.metrics_read_timeout_s,
                cfg.metrics_write_timeout_s,
            )
        except OSError as e:
            raise StartupError(f"server.metrics_listen: cannot bind {address} ({e.strerror or e})") from e
        self.state.metrics_address = (
            f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
        )
        log_event(_log, logging.INFO, "metrics_listening", address=self.metrics_address, path="/metrics")

    def _device_state_changed(self, state: DeviceState) -> None:
        if state == DeviceState.READY and self.state.phase == ServerPhase.SERVING and self.core.batcher.accepting:
            self._notify_ready()
        serving = health_pb2.HealthCheckResponse.SERVING if state == DeviceState.READY else None
        status = serving or health_pb2.HealthCheckResponse.NOT_SERVING
        task = asyncio.get_running_loop().create_task(self._set_health(status))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for service in HEALTH_SERVICES:
            await self.health.set(service, status)

    # -- watchdog -------------------------------------------------------------------------------------

    async def _watchdog_loop(self) -> None:
        """Ping systemd at half its interval, but only when the event loop, the device thread and the card live:
        a status read a HEARTBEAT that moved since the last one, and the device thread is idle or showed life
        (a job's wait loop ticks every poll interval, however long the search) within the interval.

        A FAILED device does not stop the pings: the daemon recovers it itself (with backoff), and a restart by
        systemd would only interrupt that and drop the answers the daemon still gives (Admin, UNAVAILABLE)."""
        interval = self.config.systemd.watchdog_usec / 2e6
        probe: asyncio.Task[DeviceInfo] | None = None
        heartbeat: int | None = None
        while True:
            if probe is None or probe.done():
                probe = asyncio.get_running_loop().create_task(self.worker.status())
            done, _ = await asyncio.wait({probe}, timeout=interval)
            alive = probe in done and probe.exception() is None and self.worker.thread_alive(2 * interval)
            if alive:
                heartbeat, previous = probe.result().heartbeat, heartbeat
                alive = heartbeat_moved(previous, heartbeat)
            if alive:
                sdnotify.notify(self.config.systemd.notify_socket, "WATCHDOG=1")
            else:
                log_event(_log, logging.WARNING, "watchdog_missed", state=self.worker.state.name.lower())
            if probe in done:  # a stuck probe is waited on again; an answered one is not repeated at once
                await asyncio.sleep(interval)

    # -- shutdown -------------------------------------------------------------------------------------

    async def shutdown(self) -> bool:
        """Drain and stop; ``False`` only if the one-answer invariant was found broken (a bug).

        A second signal, or ``shutdown_grace_s`` running out, cuts the drain short: what is still queued
        is answered UNAVAILABLE, so every request still gets its one answer and the stop stays orderly.
        """
        grace = self.config.server.shutdown_grace_s
        start = time.monotonic()
        self.state.enter(ServerPhase.DRAINING)
        log_event(_log, logging.INFO, "draining", queued=self.core.batcher.queue_depth, grace_s=grace)
        sdnotify.notify(self.config.systemd.notify_socket, "STOPPING=1")
        await self.health.enter_graceful_shutdown()
        drain = asyncio.get_running_loop().create_task(self.core.drain())
        force = asyncio.get_running_loop().create_task(self._force.wait())
        done, _ = await asyncio.wait({drain, force}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        force.cancel()
        forced = drain not in done
        if forced:
            log_event(_log, logging.WARNING, "drain_cut_short", queued=self.core.batcher.queue_depth)
            await self.core.batcher.close()  # whatever is left is answered UNAVAILABLE
            drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
        intact = self._invariant_holds()
        if not self._force.is_set():
            await self._quiesce(min(start + grace, time.monotonic() + LAME_DUCK_MAX_S))
        if self.server is not None:
            # Every handler has returned its answer; grpc only has to flush them. A longer grace would only
            # wait for idle client connections to go away. A call that reaches grpc in the instant it stops (before
            # its client has read the GOAWAY) is cancelled by grpc.aio itself, which stops taking calls at once:
            # the one answer we cannot make UNAVAILABLE. The client library retries such a CANCELLED.
            log_event(_log, logging.INFO, "grpc_stopping", active_rpcs=self.state.active_rpcs)
            await self.server.stop(FLUSH_GRACE_S)
        await self._close()
        stats = self.core.batcher.stats
        log_event(
            _log, logging.INFO, "stopped", forced=forced, submitted=stats.submitted, answered=stats.answered,
            duration_ms=round((time.monotonic() - start) * 1e3, 3),
        )  # fmt: skip
        return intact

    def _invariant_holds(self) -> bool:
        try:
            self.core.batcher.check_invariant()
        except AssertionError as e:
            log_event(_log, logging.CRITICAL, "invariant_violated", error=str(e))
            return False
        return True

    async def _quiesce(self, deadline: float) -> None:
        """Lame duck: keep answering (UNAVAILABLE for new work) until no handler runs and no call arrived for
        ``QUIET_S``, or ``deadline``. grpc cancels calls that arrive while it stops, so stopping the moment
        the queue is empty would answer CANCELLED to clients that had not yet seen our UNAVAILABLE."""
        while time.monotonic() < deadline and not self._force.is_set():
            if self.state.quiet_for(QUIET_S):
                return
            await asyncio.sleep(0.01)

    async def _close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self.server is not None:
            await self.server.stop(0)
        if self._core is None:  # startup stopped before the device was attached
            await self.metrics.shutdown()
        else:
            await self.core.stop_recovery()
            self.core.close()
            await self.core.batcher.close()
            loop = asyncio.get_running_loop()
            await asyncio.gather(self.metrics.shutdown(), loop.run_in_executor(None, self.worker.close))
        self.state.enter(ServerPhase.STOPPED)


def _bind(server: grpc.aio.Server, address: str, tls: ServerTLS | None = None) -> str:
    """Add a listener (TLS on TCP when configured); returns the address with the resolved port (``HOST:0`` gets
    the one the OS picked)."""
    unix = address.startswith("unix:")
    if unix:
        _refuse_live_unix_socket(address)
    try:
        port = (
            server.add_insecure_port(address)
            if unix or tls is None
            else server.add_secure_port(address, tls.credentials())
        )
    except RuntimeError as e:
        raise StartupError(f"server.listen: cannot bind {address} ({e})") from e
    if address.startswith("unix:"):
        return address
    if port == 0:
        raise StartupError(f"server.listen: cannot bind {address}")
    host = address.rpartition(":")[0]
    return f"{host}:{port}"


def _refuse_live_unix_socket(address: str) -> None:
    """gRPC unlinks whatever is at a ``unix:`` path before binding, so a second daemon would silently take the
    socket from a running one. Refuse, as for a TCP port in use: if something accepts a connection there, it is
    alive; a socket file nobody listens on (left by a crash) is stale and may be replaced."""
    path = _socket_path(address)
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return  # stale: no listener behind the file
    except OSError as e:
        raise StartupError(f"server.listen: cannot bind {address}: {path} exists and cannot be probed ({e})") from e
    else:
        raise StartupError(f"server.listen: cannot bind {address}: a running process listens on {path}")
    finally:
        probe.close()


def _socket_path(address: str) -> str:
    path = address.removeprefix("unix:")
    return path[2:] if path.startswith("//") else path  # unix:///abs/path


def heartbeat_moved(previous: int | None, current: int) -> bool:
    """The card's free-running HEARTBEAT advanced since the last watchdog probe (or there was none): its
    clock and sequencer run. A card that answers registers with a frozen heartbeat is hung."""
    return previous is None or current != previous


async def serve(config: Config) -> int:
    """The process's life; a late signal during interpreter exit is ignored (see :meth:`Daemon.run`)."""
    return await Daemon(config).run(restore_signals=False)
