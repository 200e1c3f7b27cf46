"""A program flattened into the arrays the fast core reads.

The layout mirrors what the device's program memory holds: a constraint table with offsets into one
scope array, per-constraint parameters, TABLE2 row and column masks, and the variable-to-constraint
incidence the engine uses to wake only the propagators a change can affect. Exact ALLDIFFs also get a
row of per-value holder counts in the engine's state (``count_row``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fpgacsp_proto.isa import AllDiff, Linear, Neq, Program, Table2


@dataclass(frozen=True)
class CompiledProgram:
    program: Program
    num_vars: int
    domain_size: int
    kind: np.ndarray  # int64[C]
    start: np.ndarray  # int64[C + 1]: scope of constraint c is scope[start[c]:start[c + 1]]
    scope: np.ndarray  # int64[S]
    coeff: np.ndarray  # int64[S]: LINEAR coefficients aligned with scope
    flag: np.ndarray  # int64[C]: ALLDIFF exact, LINEAR op
    param: np.ndarray  # int64[C]: NEQ k, LINEAR rhs
    table: np.ndarray  # uint64[T]: TABLE2 rows then columns, D words each
    table_start: np.ndarray  # int64[C]: offset into table (-1 when not TABLE2)
    var_start: np.ndarray  # int64[N + 1]: constraints on variable v are var_cons[var_start[v]:...]
    var_cons: np.ndarray  # uint64[S]
    count_row: np.ndarray  # int64[C]: row of per-value holder counts of an exact ALLDIFF, -1 otherwise
    num_count_rows: int

    @property
    def num_constraints(self) -> int:
        return len(self.kind)


def compile_program(program: Program) -> CompiledProgram:
    """Flatten a validated program. Cheap enough to run once per registered program."""
    n, d = program.num_vars, program.domain_size
    kinds: list[int] = []
    starts = [0]
    scope: list[int] = []
    coeff: list[int] = []
    flags: list[int] = []
    params: list[int] = []
    table_start: list[int] = []
    table: list[int] = []
    for c in program.constraints:
        kinds.append(int(c.kind))
        scope.extend(c.scope)
        starts.append(len(scope))
        flag = param = 0
        tstart = -1
        if isinstance(c, AllDiff):
            flag = int(c.exact)
            coeff.extend([0] * len(c.vars))
        elif isinstance(c, Neq):
            param = c.k
            coeff.extend([0, 0])
        elif isinstance(c, Table2):
            tstart = len(table)
            table.extend(c.rows)
            table.extend(c.columns(d))
            coeff.extend([0, 0])
        elif isinstance(c, Linear):
            flag, param = int(c.op), c.rhs
            coeff.extend(c.coeffs)
        flags.append(flag)
        params.append(param)
        table_start.append(tstart)
    var_lists: list[list[int]] = [[] for _ in range(n)]
    for ci, c in enumerate(program.constraints):
        for v in c.scope:
            var_lists[v].append(ci)
    var_start = np.zeros(n + 1, dtype=np.int64)
    var_start[1:] = np.cumsum([len(lst) for lst in var_lists])
    var_cons = np.array([ci for lst in var_lists for ci in lst], dtype=np.uint64)
    count_row = np.full(len(kinds), -1, dtype=np.int64)
    exact = [ci for ci, c in enumerate(program.constraints) if isinstance(c, AllDiff) and c.exact]
    count_row[exact] = np.arange(len(exact))
    return CompiledProgram(
        program=program,
        num_vars=n,
        domain_size=d,
        kind=np.array(kinds, dtype=np.int64),
        start=np.array(starts, dtype=np.int64),
        scope=np.array(scope, dtype=np.uint64),
        coeff=np.array(coeff, dtype=np.int64),
        flag=np.array(flags, dtype=np.int64),
        param=np.array(params, dtype=np.int64),
        table=np.array(table, dtype=np.uint64),
        table_start=np.array(table_start, dtype=np.int64),
        var_start=var_start,
        var_cons=var_cons,
        count_row=count_row,
        num_count_rows=len(exact),
    )
