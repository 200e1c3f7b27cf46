"""N-queens: one variable per row holding the column of that row's queen.

Columns are all different (an exact ALLDIFF: n queens fill n columns), and the two diagonals are NEQ
constraints with offsets, ``x_i != x_j + (j - i)`` and ``x_i != x_j + (i - j)``, the textbook model that
exercises NEQ with ``k != 0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from fpgacsp_proto.isa import AllDiff, Constraint, Neq, Program, make_program


def queens_program(n: int) -> Program:
    """``n`` variables (row i -> column of its queen), ``D = n``: ALLDIFF first, then the diagonal NEQs."""
    if not 1 <= n <= 64:
        raise ValueError(f"n: must be in [1, 64], got {n}")
    cons: list[Constraint] = [AllDiff(tuple(range(n)), exact=True)]
    for i in range(n):
        for j in range(i + 1, n):
            cons.append(Neq(i, j, j - i))
            cons.append(Neq(i, j, i - j))
    return make_program(n, n, cons)


def check_queens_solution(columns: Sequence[int] | np.ndarray) -> bool:
    """True when ``columns[i]`` places n non-attacking queens (one per row, in range)."""
    cols = [int(c) for c in columns]
    n = len(cols)
    if any(not 0 <= c < n for c in cols):
        return False
    return all(cols[i] != cols[j] and abs(cols[i] - cols[j]) != j - i for i in range(n) for j in range(i + 1, n))
