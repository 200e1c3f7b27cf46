"""Outside baselines for the engine benchmark: python-sat (Glucose, incremental) and OR-tools CP-SAT.

Both are built from the same ISA program the fast core runs, so every family (Sudoku, QCP, colouring)
gets its baseline from one place and the comparison is of solvers, not of hand-written encodings.
Only ALLDIFF and NEQ are encoded: they are all the benchmark families use.

- Glucose: the standard one-hot CNF (a variable per (cell, value); per cell at least one and at most one
  value; per ALLDIFF each value at most once, and at least once when exact; per NEQ and value, not both).
  The CNF is built once per program; an instance's givens are passed as *assumptions*, so one solver
  object serves a whole file and keeps what it learned (the incremental use SAT solvers are built for).
- CP-SAT: a model per instance (``AddAllDifferent``, ``x != y + k``, givens as fixed variables), solved
  with ``num_workers = 1`` so its figure is per core.

Every answer is returned as values (one int per variable) so the caller can check it with
:func:`check_assignment`, independently of the solver that produced it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from fpgacsp_proto.isa import AllDiff, Neq, Program
from ortools.sat.python import cp_model
from pysat.solvers import Glucose4

DEFAULT_CONFLICT_BUDGET = 2_000_000
DEFAULT_CPSAT_SECONDS = 20.0


class Outcome(enum.Enum):
    SAT = "SAT"
    UNSAT = "UNSAT"
    LIMIT = "LIMIT"  # the solver's budget ran out before an answer


@dataclass(frozen=True)
class Answer:
    """One instance's answer: ``values`` (int64[N]) when SAT, else None."""

    outcome: Outcome
    values: np.ndarray | None = None


def givens_of(domains: np.ndarray, domain_size: int) -> np.ndarray:
    """int64[N]: the value of each singleton domain, -1 for a full domain.

    The baselines take givens, not arbitrary domains; a partial domain would need extra clauses, and no
    benchmark family has one, so it is rejected rather than silently widened.
    """
    d = np.asarray(domains, dtype=np.uint64).reshape(-1)
    full = np.uint64((1 << domain_size) - 1)
    single = (d != 0) & ((d & (d - np.uint64(1))) == 0)
    if not np.all(single | (d == full)):
        bad = int(np.flatnonzero(~(single | (d == full)))[0])
        raise ValueError(f"domains[{bad}] = {int(d[bad]):#x} is neither a singleton nor full")
    out = np.full(len(d), -1, dtype=np.int64)
    out[single] = np.log2(d[single].astype(np.float64)).astype(np.int64)
    return out


def check_assignment(program: Program, values: np.ndarray, givens: np.ndarray | None = None) -> str | None:
    """None when ``values`` satisfies every constraint (and keeps the givens), else the first violation."""
    vals = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(vals) != program.num_vars:
        return f"expected {program.num_vars} values, got {len(vals)}"
    if vals.min() < 0 or vals.max() >= program.domain_size:
        return f"values outside 0..{program.domain_size - 1}"
    if givens is not None:
        g = np.asarray(givens).reshape(-1)
        moved = np.flatnonzero((g >= 0) & (g != vals))
        if len(moved):
            return f"variable {int(moved[0])} changed its given {int(g[moved[0]])} to {int(vals[moved[0]])}"
    for i, c in enumerate(program.constraints):
        if isinstance(c, AllDiff):
            if len(set(vals[list(c.vars)].tolist())) != len(c.vars):
                return f"constraints[{i}] ALLDIFF violated"
        elif isinstance(c, Neq):
            if vals[c.x] == vals[c.y] + c.k:
                return f"constraints[{i}] NEQ x{c.x} != x{c.y} + {c.k} violated"
        else:
            raise NotImplementedError(f"check_assignment: {c.kind.name} is not used by the benchmarks")
    return None


# --- CNF encoding and Glucose --------------------------------------------------------------------------


def _lit(var: int, value: int, domain_size: int) -> int:
    """DIMACS literal of 'variable ``var`` takes ``value``' (1-based)."""
    return var * domain_size + value + 1


def cnf_clauses(program: Program) -> list[list[int]]:
    """The one-hot CNF of a program (see the module docstring); pairwise at-most-one everywhere."""
    d = program.domain_size
    clauses: list[list[int]] = []
    for v in range(program.num_vars):
        lits = [_lit(v, a, d) for a in range(d)]
        clauses.append(lits)
        clauses.extend([-x, -y] for x, y in combinations(lits, 2))
    for c in program.constraints:
        if isinstance(c, AllDiff):
            for a in range(d):
                lits = [_lit(v, a, d) for v in c.vars]
                if c.exact:
                    clauses.append(lits)
                clauses.extend([-x, -y] for x, y in combinations(lits, 2))
        elif isinstance(c, Neq):
            for a in range(d):
                b = a - c.k  # x = a conflicts with y = a - k
                if 0 <= b < d:
                    clauses.append([-_lit(c.x, a, d), -_lit(c.y, b, d)])
        else:
            raise NotImplementedError(f"cnf_clauses: {c.kind.name} has no CNF encoding here")
    return clauses


class GlucoseBaseline:
    """python-sat Glucose 4 over the program's CNF.

    ``incremental=True``: one solver for every instance, givens as assumptions. ``incremental=False``
    loads the prebuilt CNF into a fresh solver per call; use it when instances have no givens (graph
    colouring), where re-solving the same formula on a warm solver would measure nothing.
    """

    def __init__(
        self, program: Program, incremental: bool = True, conflict_budget: int = DEFAULT_CONFLICT_BUDGET
    ) -> None:
        self.program = program
        self.incremental = incremental
        self.conflict_budget = conflict_budget
        self.clauses = cnf_clauses(program)
        self._solver: Glucose4 | None = Glucose4(bootstrap_with=self.clauses) if incremental else None

    def solve(self, givens: np.ndarray) -> Answer:
        d = self.program.domain_size
        g = np.asarray(givens, dtype=np.int64)
        fixed = np.flatnonzero(g >= 0)
        assumptions = (fixed * d + g[fixed] + 1).tolist()
        if self._solver is not None:
            return self._run(self._solver, assumptions)
        with Glucose4(bootstrap_with=self.clauses) as solver:
            return self._run(solver, assumptions)

    def _run(self, solver: Glucose4, assumptions: list[int]) -> Answer:
        solver.conf_budget(self.conflict_budget)
        sat = solver.solve_limited(assumptions=assumptions)
        if sat is None:
            return Answer(Outcome.LIMIT)
        if not sat:
            return Answer(Outcome.UNSAT)
        n, d = self.program.num_vars, self.program.domain_size
        model = np.asarray(solver.get_model()[: n * d], dtype=np.int64)
        return Answer(Outcome.SAT, (model > 0).reshape(n, d).argmax(axis=1))

    def close(self) -> None:
        if self._solver is not None:
            self._solver.delete()
            self._solver = None


# --- CP-SAT --------------------------------------------------------------------------------------------


class CpSatBaseline:
    """OR-tools CP-SAT, one model per instance, one worker (a per-core figure)."""

    def __init__(self, program: Program, workers: int = 1, max_seconds: float = DEFAULT_CPSAT_SECONDS) -> None:
        for c in program.constraints:
            if not isinstance(c, AllDiff | Neq):
                raise NotImplementedError(f"CpSatBaseline: {c.kind.name} is not modelled")
        self.program = program
        self.workers = workers
        self.max_seconds = max_seconds

    def solve(self, givens: np.ndarray) -> Answer:
        p = self.program
        model = cp_model.CpModel()
        g = np.asarray(givens, dtype=np.int64).tolist()
        x = [model.new_int_var(v, v, "") if v >= 0 else model.new_int_var(0, p.domain_size - 1, "") for v in g]
        for c in p.constraints:
            if isinstance(c, AllDiff):
                model.add_all_different([x[v] for v in c.vars])
            elif isinstance(c, Neq):
                model.add(x[c.x] != x[c.y] + c.k)
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = self.workers
        solver.parameters.max_time_in_seconds = self.max_seconds
        status = solver.solve(model)
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return Answer(Outcome.SAT, np.array([solver.value(v) for v in x], dtype=np.int64))
        if status == cp_model.INFEASIBLE:
            return Answer(Outcome.UNSAT)
        return Answer(Outcome.LIMIT)
