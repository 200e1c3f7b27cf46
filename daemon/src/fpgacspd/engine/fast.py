"""The fast core: the reference semantics, compiled with numba, batched and spread over cores.

The kernel releases the GIL, so the daemon's device thread runs it while the gRPC loop keeps serving,
and a large batch is shared by a small thread pool: thread t takes instances t, t + T, t + 2T, ...
Interleaving balances the cores without per-chunk dispatch (work per puzzle varies by orders of
magnitude on hard sets, and clusters in files sorted by difficulty).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fpgacsp_proto.bitset import check_domains, check_priorities
from fpgacsp_proto.isa import Program

from . import _kernels, precompile
from .batch import BatchResult, empty_result
from .compiled import CompiledProgram, compile_program
from .reference import DEFAULT_OPTIONS, SolveOptions

_NO_PRIORITIES = np.zeros((1, 1, 1), dtype=np.uint8)


class SolveControl:
    """Abort and progress of one running :meth:`FastEngine.solve`, shared with other threads.

    ``abort()`` stops the solve at the next search node of each of its threads (what a card's job abort
    does); ``nodes`` is the number of nodes searched so far, read while it runs: a search that keeps
    counting is slow, not hung.
    """

    def __init__(self, threads: int) -> None:
        self.words = np.zeros(1 + max(1, threads), dtype=np.int64)  # [abort, nodes of thread 0, 1, ...]

    def abort(self) -> None:
        self.words[0] = 1

    @property
    def aborted(self) -> bool:
        return bool(self.words[0])

    @property
    def nodes(self) -> int:
        return int(self.words[1:].sum())


class FastEngine:
    """Batched solver. ``threads`` defaults to the CPU count; batches below ``min_parallel_batch`` run inline."""

    def __init__(self, threads: int | None = None, min_parallel_batch: int = 8) -> None:
        self.threads = max(1, threads or os.cpu_count() or 1)
        self.min_parallel_batch = min_parallel_batch
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def compile(self, program: Program) -> CompiledProgram:
        return compile_program(program)

    def solve(
        self,
        program: Program | CompiledProgram,
        domains: np.ndarray,
        priorities: np.ndarray | None = None,
        options: SolveOptions = DEFAULT_OPTIONS,
        out: BatchResult | None = None,
        control: SolveControl | None = None,
    ) -> BatchResult:
        """Solve a batch. ``out`` (zeroed, from :func:`empty_result`) receives the results as instances finish:
        an instance's status turns non-zero when it is done, which a caller may watch from another thread.
        ``control`` (from :meth:`control`) lets another thread abort the solve and watch its progress; an
        aborted solve returns early with the unfinished instances' status still 0."""
        if not precompile.ready():
            precompile.ensure_kernel()  # this process's first solve: load the kernel, or say it compiles
        cp = program if isinstance(program, CompiledProgram) else compile_program(program)
        doms = check_domains(domains, cp.num_vars, cp.domain_size)
        prios = check_priorities(priorities, len(doms), cp.num_vars, cp.domain_size)
        res = empty_result(len(doms), cp.num_vars) if out is None else out
        if res.domains.shape != doms.shape:
            raise ValueError(f"out: expected results for {list(doms.shape)}, got {list(res.domains.shape)}")
        batch = len(doms)
        ctl = control if control is not None else self.control()
        if len(ctl.words) < 1 + min(self.threads, batch):
            raise ValueError(f"control: made for {len(ctl.words) - 1} threads, this engine runs {self.threads}")
        if self.threads == 1 or batch < self.min_parallel_batch:
            self._run(cp, doms, prios, options, res, 0, 1, ctl.words)
            return res
        step = min(self.threads, batch)
        futures = [
            self._executor().submit(self._run, cp, doms, prios, options, res, t, step, ctl.words) for t in range(step)
        ]
        for f in futures:
            f.result()
        return res

    def control(self) -> SolveControl:
        """A fresh abort and progress handle for one :meth:`solve` on this engine."""
        return SolveControl(self.threads)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="fpgacsp-core")
            return self._pool

    @staticmethod
    def _run(
        cp: CompiledProgram,
        doms: np.ndarray,
        prios: np.ndarray | None,
        options: SolveOptions,
        res: BatchResult,
        first: int,
        step: int,
        control: np.ndarray,
    ) -> None:
        _kernels.solve_range(
            cp.kind, cp.start, cp.scope, cp.coeff, cp.flag, cp.param, cp.table, cp.table_start, cp.var_start,
            cp.var_cons, cp.count_row, cp.num_count_rows, cp.domain_size,
            doms, _NO_PRIORITIES if prios is None else prios, prios is not None,
            int(options.mode), options.node_limit, options.max_solutions, first, step,
            res.domains, res.status, res.nodes, res.solutions, res.sweeps, control,
        )  # fmt: skip
