"""Batch-level API shared by the reference model and the fast core."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fpgacsp_proto.bitset import check_domains, check_priorities
from fpgacsp_proto.isa import Program

from .reference import DEFAULT_OPTIONS, SolveOptions, solve


@dataclass(frozen=True)
class BatchResult:
    """Per-instance results of one batch; row ``b`` answers instance ``b``."""

    domains: np.ndarray  # uint64[B, N]
    status: np.ndarray  # uint8[B], values of fpgacsp_proto.Status
    nodes: np.ndarray  # int64[B]
    solutions: np.ndarray  # int64[B]
    sweeps: np.ndarray  # int64[B], synchronous sweeps: the cycle model

    @property
    def batch_size(self) -> int:
        return len(self.status)

    def equals(self, other: BatchResult) -> bool:
        """Bit-identical in every field, the contract between implementations."""
        return all(
            np.array_equal(getattr(self, f), getattr(other, f))
            for f in ("domains", "status", "nodes", "solutions", "sweeps")
        )


def empty_result(batch: int, num_vars: int) -> BatchResult:
    return BatchResult(
        domains=np.zeros((batch, num_vars), dtype=np.uint64),
        status=np.zeros(batch, dtype=np.uint8),
        nodes=np.zeros(batch, dtype=np.int64),
        solutions=np.zeros(batch, dtype=np.int64),
        sweeps=np.zeros(batch, dtype=np.int64),
    )


def reference_solve_batch(
    program: Program,
    domains: np.ndarray,
    priorities: np.ndarray | None = None,
    options: SolveOptions = DEFAULT_OPTIONS,
) -> BatchResult:
    """The reference model over a batch, instance by instance."""
    doms = check_domains(domains, program.num_vars, program.domain_size)
    prios = check_priorities(priorities, len(doms), program.num_vars, program.domain_size)
    res = empty_result(len(doms), program.num_vars)
    for b in range(len(doms)):
        r = solve(program, [int(x) for x in doms[b]], None if prios is None else prios[b].tolist(), options)
        res.domains[b] = np.array(r.domains, dtype=np.uint64)
        res.status[b] = r.status
        res.nodes[b] = r.nodes
        res.solutions[b] = r.solutions
        res.sweeps[b] = r.sweeps
    return res
