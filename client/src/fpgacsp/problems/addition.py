"""Digit addition ``a + b = s`` in base ``base`` (MNIST-addition style tasks), as LINEAR equations.

Variable layout for ``k = num_digits`` (every number least significant digit first, ``D = base``):

- ``a`` digits: variables ``0 .. k-1`` (variable ``i`` is the digit of weight ``base**i``)
- ``b`` digits: variables ``k .. 2k-1``
- ``s`` digits: variables ``2k .. 3k`` (``k + 1`` digits: the sum may carry into one more place)
- with ``carries=True`` only: the carries ``c_1 .. c_{k-1}`` into columns ``1 .. k-1``, variables ``3k+1 .. 4k-1``

Two forms of the same relation:

- ``carries=False`` (the default): one constraint, ``sum base^i a_i + sum base^i b_i - sum base^i s_i == 0``. Its
  coefficients grow as ``base**k``, so ``k`` is capped by the ISA's largest coefficient (9 decimal digits), and
  bounds propagation on one wide sum is weak: fixing ``s`` narrows the digits only a little.
- ``carries=True``: one equation per column, as written by hand, ``a_i + b_i + c_i - s_i - base * c_{i+1} == 0``
  (``c_0`` is absent and ``c_k`` is the sum's top digit ``s_k``). Coefficients stay at ``base``, so any ``k`` the
  variable count allows works (A-NeSI's 15-digit task among them), and each column propagates on its own. Every
  carry is 0 or 1 in every solution (``a_i + b_i + c_i <= 2 base - 1``), so the carries need no domain of their
  own: they are ordinary variables over ``0 .. base-1``.

Known numbers are given as singleton digit domains (:func:`addition_domains`), unknown ones (and the carries) as
full domains, so the same program answers "what is s", "which a, b make s" and everything in between.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from fpgacsp_proto.isa import MAX_COEFF, Linear, LinearOp, Program, make_program


def addition_program(num_digits: int = 1, base: int = 10, *, carries: bool = False) -> Program:
    """``3k + 1`` variables (``4k`` with carries; layout in the module docstring), ``D = base``, LINEAR EQs."""
    _check(num_digits, base, carries)
    k = num_digits
    if not carries:
        weights = [base**i for i in range(k)]
        coeffs = weights + weights + [-(base**i) for i in range(k + 1)]
        return make_program(3 * k + 1, base, [Linear(tuple(coeffs), tuple(range(3 * k + 1)), LinearOp.EQ, 0)])
    columns = []
    for i in range(k):
        coeffs, vars_ = [1, 1, -1], [i, k + i, 2 * k + i]
        if i > 0:  # the carry into this column
            coeffs.append(1)
            vars_.append(_carry(k, i))
        coeffs.append(-base)  # the carry out of it: the next column's carry, or the sum's top digit
        vars_.append(_carry(k, i + 1) if i + 1 < k else 3 * k)
        columns.append(Linear(tuple(coeffs), tuple(vars_), LinearOp.EQ, 0))
    return make_program(4 * k, base, columns)


def addition_vars(num_digits: int = 1, *, carries: bool = False) -> int:
    """How many variables :func:`addition_program` has: ``3k + 1``, or ``4k`` with carries."""
    return 4 * num_digits if carries else 3 * num_digits + 1


def _carry(k: int, i: int) -> int:
    """The variable of the carry into column ``i`` (``1 <= i < k``)."""
    return 3 * k + i


def _check(num_digits: int, base: int, carries: bool = False) -> None:
    if not 2 <= base <= 64:
        raise ValueError(f"base: must be in [2, 64] (the ISA's domain sizes), got {base}")
    if isinstance(num_digits, bool) or not isinstance(num_digits, int) or num_digits < 1:
        raise ValueError(f"num_digits: must be a positive integer, got {num_digits!r}")
    if not carries and base**num_digits > MAX_COEFF:
        raise ValueError(
            f"num_digits: base**num_digits = {base}**{num_digits} exceeds the ISA's largest coefficient {MAX_COEFF}"
            "; use carries=True (one equation per column)"
        )


def _digit_domains(value: int | None, count: int, base: int, name: str) -> list[int]:
    full = (1 << base) - 1
    if value is None:
        return [full] * count
    if not 0 <= value < base**count:
        raise ValueError(f"{name}: must be in [0, {base**count}) ({count} base-{base} digits), got {value}")
    return [1 << (value // base**i % base) for i in range(count)]


def addition_domains(
    a: int | None, b: int | None, s: int | None, num_digits: int = 1, base: int = 10, *, carries: bool = False
) -> np.ndarray:
    """Domains ``uint64[1, N]`` (a batch of one) with known numbers fixed and ``None`` (and carries) left open."""
    _check(num_digits, base, carries)
    k = num_digits
    row = _digit_domains(a, k, base, "a") + _digit_domains(b, k, base, "b") + _digit_domains(s, k + 1, base, "s")
    if carries:
        row += [(1 << base) - 1] * (k - 1)
    return np.array([row], dtype=np.uint64)


def addition_values(
    values: Sequence[int] | np.ndarray, num_digits: int = 1, base: int = 10, *, carries: bool = False
) -> tuple[int, int, int]:
    """Decode a solution (one value per variable) into the numbers ``(a, b, s)``."""
    k = num_digits
    vals = [int(v) for v in values]
    n = addition_vars(k, carries=carries)
    if len(vals) != n:
        raise ValueError(f"values: expected {n} digits for num_digits={k}, got {len(vals)}")

    def number(digits: list[int]) -> int:
        return sum(d * base**i for i, d in enumerate(digits))

    return number(vals[:k]), number(vals[k : 2 * k]), number(vals[2 * k : 3 * k + 1])
