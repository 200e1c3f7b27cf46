"""The ``"local"`` target: the daemon's API over the in-process engine (``LocalSolver``), no daemon needed.

It behaves like a daemon with one client: the same input checks and exceptions, a program registry
(``register``, ``release``, ``list_programs``, ``program_info``), device status and stats describing the
engine, a self-test of known answers, and ``reset``. Differences, by nature: ``SolveResult.timing`` is None
(there is no queue), and a ``timeout`` is checked but cannot interrupt the engine once it runs (solving is
pure CPU work inside a GIL-free kernel; pass a ``node_limit`` to bound it instead). A local client survives
``fork``: a child process gets its own engine threads on first use.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from fpgacsp_proto.encoding import encode_program
from fpgacsp_proto.isa import AllDiff, Mode, Program, Status, make_program

from . import _codec
from ._client import DEFAULT_TIMEOUT, LOCAL_TARGET, Client
from ._errors import FpgacspError, NotFoundError
from ._local import DEFAULT_NODE_LIMIT, LocalSolver
from ._types import (
    DeviceState,
    DeviceStatus,
    MethodStats,
    ProgramInfo,
    ResetResult,
    SelfTestCase,
    SelfTestResult,
    SolveResult,
    Stats,
)

MAX_PROGRAMS = 256  # as the daemon's default registry.max_programs: unpinned programs beyond it are evicted


@dataclass
class _Entry:
    program: Program
    pinned: bool
    registered_ms: int
    solves: int = 0
    last_used_ms: int = 0


class LocalClient(Client):
    """The in-process engine behind the :class:`Client` API. Thread-safe; survives fork."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, threads: int | None = None, **unknown: Any) -> None:
        if unknown:
            raise TypeError(f"the 'local' target takes no channel options, got {sorted(unknown)} (only threads=)")
        self.target = LOCAL_TARGET
        self.timeout = _codec.check_timeout(timeout)
        self.threads = threads
        self._solver = LocalSolver(threads)  # imports the engine now: a missing extra fails at connect
        self._pid = os.getpid()
        self._started = time.monotonic()
        self._ids = _codec.ProgramIds()
        self._programs: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._requests: Counter[tuple[str, str]] = Counter()
        self._totals = {"batches": 0, "instances": 0, "nodes": 0, "sweeps": 0, "resets": 0}
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_reconnect_local, (self.timeout, self.threads))

    # --- data plane ------------------------------------------------------------------------------------

    def register(self, program: Program, *, pin: bool = False, timeout: float | None = None) -> str:
        with self._counted("RegisterProgram"):
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
        with self._counted("Solve"):
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
                entry = self._programs.get(pid)
                if entry is not None:
                    entry.solves += 1
                    entry.last_used_ms = _now_ms()
                    self._programs.move_to_end(pid)
                t = self._totals
                t["batches"] += 1
                t["instances"] += inputs.batch
                t["nodes"] += int(res.nodes.sum())
                t["sweeps"] += int(res.sweeps.sum())
            return SolveResult(res.domains, res.status, res.nodes, res.solutions, res.sweeps, timing=None)

    def release(self, program: Program | str, *, timeout: float | None = None) -> bool:
        with self._counted("ReleaseProgram"):
            self._deadline(timeout)
            pid = self._id_of(program)
            with self._lock:
                return self._programs.pop(pid, None) is not None

    def program_info(self, program: Program | str, *, timeout: float | None = None) -> ProgramInfo:
        with self._counted("GetProgram"):
            self._deadline(timeout)
            pid = self._id_of(program)
            with self._lock:
                entry = self._programs.get(pid)
                if entry is None:
                    raise NotFoundError(f"program_id: unknown program {pid}", grpc.StatusCode.NOT_FOUND, "GetProgram")
                return _info(pid, entry)

    def list_programs(self, *, timeout: float | None = None) -> list[ProgramInfo]:
        with self._counted("ListPrograms"):
            self._deadline(timeout)
            with self._lock:
                return [_info(pid, e) for pid, e in self._programs.items()]

    # --- admin plane -----------------------------------------------------------------------------------

    def device_status(self, *, timeout: float | None = None) -> DeviceStatus:
        with self._counted("GetDeviceStatus"):
            self._deadline(timeout)
            from importlib.metadata import PackageNotFoundError, version

            try:
                engine_version = version("fpgacsp-daemon")
            except PackageNotFoundError:  # pragma: no cover - the engine imported, so it is installed
                engine_version = "unknown"
            threads = max(1, self.threads or os.cpu_count() or 1)  # as FastEngine counts them
            with self._lock:
                t = dict(self._totals)
                loaded = len(self._programs)
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
        with self._counted("GetStats"):
            self._deadline(timeout)
            with self._lock:
                requests = tuple(MethodStats(m, c, n) for (m, c), n in sorted(self._requests.items()))
                t = dict(self._totals)
                loaded = len(self._programs)
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
        with self._counted("SelfTest"):
            self._deadline(timeout)
            return _self_test(self._engine())

    def reset(self, *, timeout: float | None = None) -> ResetResult:
        """Restart the engine (threads, compiled programs) and self-test it; registered programs stay."""
        with self._counted("Reset"):
            self._deadline(timeout)
            start = time.perf_counter()
            with self._lock:
                self._solver.close()
                self._solver = LocalSolver(self.threads)
                self._totals["resets"] += 1
            passed = _self_test(self._engine()).passed
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
        """Register ``program`` unless known (as ``RegisterProgram`` does); ``pin`` only ever adds a pin."""
        pid = self._ids.id_of(program)
        with self._lock:
            entry = self._programs.get(pid)
            if entry is None:
                self._programs[pid] = _Entry(program, pin, _now_ms())
                self._evict()
            else:
                entry.pinned = entry.pinned or pin
        return pid

    def _evict(self) -> None:
        """Drop the least recently used unpinned programs beyond MAX_PROGRAMS (caller holds the lock)."""
        for pid in [p for p, e in self._programs.items() if not e.pinned]:
            if len(self._programs) <= MAX_PROGRAMS:
                break
            del self._programs[pid]

    @contextmanager
    def _counted(self, method: str) -> Iterator[None]:
        """Count a call by method and outcome, as the daemon's request counters do."""
        code = "UNKNOWN"
        try:
            yield
            code = "OK"
        except FpgacspError as exc:
            code = exc.code.name if exc.code is not None else "INVALID_ARGUMENT"
            raise
        except (ValueError, TypeError):
            code = "INVALID_ARGUMENT"
            raise
        finally:
            with self._lock:
                self._requests[(method, code)] += 1


def _info(pid: str, e: _Entry) -> ProgramInfo:
    p = e.program
    return ProgramInfo(
        program_id=pid,
        num_vars=p.num_vars,
        domain_size=p.domain_size,
        num_constraints=len(p.constraints),
        encoded_bytes=len(encode_program(p)),
        pinned=e.pinned,
        solves=e.solves,
        registered_unix_ms=e.registered_ms,
        last_used_unix_ms=e.last_used_ms,
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _self_test(solver: LocalSolver) -> SelfTestResult:
    """Known answers: a Latin square of order 4 is found (and is one), two equal givens in a row are UNSAT."""
    start = time.perf_counter()
    rows = [tuple(4 * r + c for c in range(4)) for r in range(4)]
    cols = [tuple(4 * r + c for r in range(4)) for c in range(4)]
    square = make_program(16, 4, [AllDiff(u, exact=True) for u in rows + cols])
    full = np.full((2, 16), 0b1111, dtype=np.uint64)
    full[1, 0] = full[1, 1] = 0b0001  # cells (0, 0) and (0, 1) both 0: the row is unsatisfiable
    res = solver.solve(square, full, mode=Mode.SOLVE, max_solutions=1)
    values = np.log2(res.domains[0].astype(np.float64)).astype(np.int64) if res.status[0] == Status.SOLVED else None
    latin = values is not None and all(len({int(values[i]) for i in u}) == 4 for u in rows + cols)
    cases = (
        SelfTestCase("latin-square-4", bool(latin), f"status {Status(int(res.status[0])).name}"),
        SelfTestCase("unsat-row", int(res.status[1]) == Status.UNSAT, f"status {Status(int(res.status[1])).name}"),
    )
    return SelfTestResult(all(c.passed for c in cases), cases, int((time.perf_counter() - start) * 1e6))


def _reconnect_local(timeout: float, threads: int | None) -> LocalClient:
    return LocalClient(timeout=timeout, threads=threads)
