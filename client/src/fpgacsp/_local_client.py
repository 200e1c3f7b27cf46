"""The ``"local"`` target: the daemon's API over the daemon's own code in this process (``_local``), no daemon.

It behaves like a daemon with one client because it is the daemon's code: the same input checks and exceptions,
the daemon's program registry (``register``, ``release``, ``list_programs``, ``program_info``; its limits and LRU
eviction), device status and stats describing the engine, the daemon's known-answer self-test, and ``reset``.
Differences, by nature: ``SolveResult.timing`` is None (there is no queue), and a ``timeout`` is checked but
cannot interrupt the engine once it runs (solving is pure CPU work inside a GIL-free kernel; pass a
``node_limit`` to bound it instead). A local client survives ``fork``: a child process gets its own engine
threads on first use.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import grpc
from fpgacsp_proto.isa import Mode, Program

from . import _codec, _local
from ._base import DEFAULT_TIMEOUT, LOCAL_TARGET, Client
from ._errors import FpgacspError
from ._local import DEFAULT_NODE_LIMIT, LocalSolver
from ._types import (
    DeviceState,
    DeviceStatus,
    Method,
    MethodStats,
    ProgramInfo,
    ResetResult,
    SelfTestResult,
    SolveResult,
    Stats,
)

if TYPE_CHECKING:
    from fpgacspd.registry import ProgramEntry


class LocalClient(Client):
    """The in-process engine behind the :class:`Client` API. Thread-safe; survives fork."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, threads: int | None = None, **unknown: Any) -> None:
        if unknown:
            raise TypeError(f"the 'local' target takes no channel options, got {sorted(unknown)} (only threads=)")
        self.target = LOCAL_TARGET
        self.timeout = _codec.check_timeout(timeout)
        self.threads = threads
        self._solver = LocalSolver(threads)  # imports the engine now: a missing extra fails at connect
        self._registry = _local.new_registry()  # used under self._lock: the daemon's is single-threaded
        self._pid = os.getpid()
        self._started = time.monotonic()
        self._ids = _codec.ProgramIds()
        self._requests: Counter[tuple[str, str]] = Counter()  # (method, code name): as the daemon's GetStats
        self._totals = {"batches": 0, "instances": 0, "nodes": 0, "sweeps": 0, "resets": 0}
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_reconnect_local, (self.timeout, self.threads))

    # --- data plane ------------------------------------------------------------------------------------

    def register(self, program: Program, *, pin: bool = False, timeout: float | None = None) -> str:
        with self._counted(Method.REGISTER_PROGRAM):
            self._deadline(timeout)
            return self._ensure(_codec.check_program(program), pin)

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
        with self._counted(Method.SOLVE):
            inputs = _codec.check_solve_inputs(program, domains, priorities, mode, node_limit, max_solutions)
            self._deadline(timeout)
            if inputs.batch == 0:
                return _codec.empty_result(program.num_vars)
            pid = self._ensure(program, pin=False)
            res = self._engine().solve(
                program,
                inputs.domains,
                inputs.priorities,
                mode=inputs.mode,
                node_limit=DEFAULT_NODE_LIMIT if inputs.node_limit is None else inputs.node_limit,
                max_solutions=inputs.max_solutions,
            )
            with self._lock:
                if pid in self._registry:  # else evicted meanwhile by another thread's registrations
                    self._registry.use(pid).solves += 1
                t = self._totals
                t["batches"] += 1
                t["instances"] += inputs.batch
                t["nodes"] += int(res.nodes.sum())
                t["sweeps"] += int(res.sweeps.sum())
            return SolveResult(res.domains, res.status, res.nodes, res.solutions, res.sweeps, timing=None)

    def release(self, program: Program | str, *, timeout: float | None = None) -> bool:
        with self._counted(Method.RELEASE_PROGRAM):
            self._deadline(timeout)
            pid = self._id_of(program)
            with self._lock:
                return self._registry.release(pid)

    def program_info(self, program: Program | str, *, timeout: float | None = None) -> ProgramInfo:
        with self._counted(Method.GET_PROGRAM):
            self._deadline(timeout)
            pid = self._id_of(program)
            with self._lock:
                return _info(self._registry.get(pid))

    def list_programs(self, *, timeout: float | None = None) -> list[ProgramInfo]:
        with self._counted(Method.LIST_PROGRAMS):
            self._deadline(timeout)
            with self._lock:
                return [_info(e) for e in self._registry.list()]

    # --- admin plane -----------------------------------------------------------------------------------

    def device_status(self, *, timeout: float | None = None) -> DeviceStatus:
        with self._counted(Method.GET_DEVICE_STATUS):
            self._deadline(timeout)
            from importlib.metadata import PackageNotFoundError, version

            try:
                engine_version = version("fpgacsp-daemon")
            except PackageNotFoundError:  # pragma: no cover - the engine imported, so it is installed
                engine_version = "unknown"
            threads = max(1, self.threads or os.cpu_count() or 1)  # as FastEngine counts them
            with self._lock:
                t = dict(self._totals)
                loaded = len(self._registry)
            return DeviceStatus(
                backend="local",
                description=f"in-process FastEngine (fpgacsp-daemon {engine_version}), {threads} threads",
                state=DeviceState.READY,
                daemon_version=engine_version,
                uptime_s=int(time.monotonic() - self._started),
                batches=t["batches"],
                instances=t["instances"],
                nodes=t["nodes"],
                sweeps=t["sweeps"],
                resets=t["resets"],
                faults=0,
                programs_loaded=loaded,
                queue_depth=0,
                max_batch=0,  # no batcher: every call is its own batch, of any size
                max_delay_us=0,
                card_nodes=t["nodes"],  # no card: the engine's own count
            )

    def stats(self, *, timeout: float | None = None) -> Stats:
        with self._counted(Method.GET_STATS):
            self._deadline(timeout)
            with self._lock:
                requests = tuple(MethodStats(m, c, n) for (m, c), n in sorted(self._requests.items()))
                t = dict(self._totals)
                loaded = len(self._registry)
            batches = t["batches"]
            return Stats(
                requests=requests,
                batches=batches,
                instances=t["instances"],
                mean_batch_size=t["instances"] / batches if batches else 0.0,
                mean_merged_requests=1.0 if batches else 0.0,
                queue_depth=0,
                programs_loaded=loaded,
                dropped_expired=0,
                dropped_cancelled=0,
                rejected_queue_full=0,
            )

    def self_test(self, *, timeout: float | None = None) -> SelfTestResult:
        with self._counted(Method.SELF_TEST):
            self._deadline(timeout)
            return _local.self_test(self._engine())

    def reset(self, *, timeout: float | None = None) -> ResetResult:
        """Restart the engine (threads, compiled programs) and self-test it; registered programs stay."""
        with self._counted(Method.RESET):
            self._deadline(timeout)
            start = time.perf_counter()
            with self._lock:
                self._solver.close()
                self._solver = LocalSolver(self.threads)
                self._totals["resets"] += 1
            passed = _local.self_test(self._engine()).passed
            return ResetResult(passed, int((time.perf_counter() - start) * 1e6))

    def close(self) -> None:
        if os.getpid() == self._pid:
            self._solver.close()

    # --- internals -------------------------------------------------------------------------------------

    def _engine(self) -> LocalSolver:
        """The engine of this process: a forked child builds its own (the parent's threads are not here)."""
        if os.getpid() != self._pid:
            with self._lock:
                if os.getpid() != self._pid:
                    self._solver = LocalSolver(self.threads)
                    self._pid = os.getpid()
        return self._solver

    def _id_of(self, program: Program | str) -> str:
        return _codec.check_program_id(program) if isinstance(program, str) else self._ids.id_of(program)

    def _ensure(self, program: Program, pin: bool) -> str:
        """Register ``program`` as ``RegisterProgram`` does (a solve's implicit registration is one too: its
        errors are RegisterProgram's, e.g. a program over the limits is a ProgramLimitError)."""
        pid = self._ids.id_of(program)
        with _local.daemon_errors(Method.REGISTER_PROGRAM):
            with self._lock:
                if pid in self._registry and not pin:  # known: no encoding on every solve (the hot path)
                    self._registry.use(pid)  # as registering it again would: most recently used
                    return pid
            prepared = self._registry.prepare(program)  # pure (limits, encoding, hash): outside the lock
            with self._lock:
                self._registry.admit(prepared, pin)
        return prepared.program_id

    @contextmanager
    def _counted(self, method: Method) -> Iterator[None]:
        """Count a call by method and outcome, as the daemon's request counters do; the daemon code's errors
        become the library's here (``_local.daemon_errors``), the local twin of a gRPC client's ``_attempt``."""
        code = grpc.StatusCode.UNKNOWN
        try:
            with _local.daemon_errors(method):
                yield
            code = grpc.StatusCode.OK
        except FpgacspError as exc:
            # no code: a check of the client's own, which the daemon would have answered INVALID_ARGUMENT
            code = exc.code if exc.code is not None else grpc.StatusCode.INVALID_ARGUMENT
            raise
        except (ValueError, TypeError):
            code = grpc.StatusCode.INVALID_ARGUMENT
            raise
        finally:
            with self._lock:
                self._requests[(method.value, code.name)] += 1


def _info(entry: ProgramEntry) -> ProgramInfo:
    return ProgramInfo(
        program_id=entry.program_id,
        num_vars=entry.num_vars,
        domain_size=entry.domain_size,
        num_constraints=entry.num_constraints,
        encoded_bytes=entry.encoded_bytes,
        pinned=entry.pinned,
        solves=entry.solves,
        registered_unix_ms=entry.registered_unix_ms,
        last_used_unix_ms=entry.last_used_unix_ms,
    )


def _reconnect_local(timeout: float, threads: int | None) -> LocalClient:
    return LocalClient(timeout=timeout, threads=threads)
