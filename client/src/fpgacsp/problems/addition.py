"""Digit addition ``a + b = s`` in base ``base`` (MNIST-addition style tasks), as one LINEAR equation.

Variable layout for ``k = num_digits`` (every number least significant digit first, ``D = base``):

- ``a`` digits: variables ``0 .. k-1`` (variable ``i`` is the digit of weight ``base**i``)
- ``b`` digits: variables ``k .. 2k-1``
- ``s`` digits: variables ``2k .. 3k`` (``k + 1`` digits: the sum may carry into one more place)

The single constraint is ``sum base^i a_i + sum base^i b_i - sum base^i s_i == 0``. Known numbers are
given as singleton digit domains (:func:`addition_domains`), unknown ones as full domains, so the same
program answers "what is s", "which a, b make s" and everything in between.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from fpgacsp_proto.isa import MAX_COEFF, Linear, LinearOp, Program, make_program


def _check(num_digits: int, base: int) -> None:
    if not 2 <= base <= 64:
        raise ValueError(f"base: must be in [2, 64] (the ISA's domain sizes), got {base}")
    if num_digits < 1:
        raise ValueError(f"num_digits: must be >= 1, got {num_digits}")
    if base**num_digits > MAX_COEFF:
        raise ValueError(
            f"num_digits: base**num_digits = {base}**{num_digits} exceeds the ISA's largest coefficient {MAX_COEFF}"
        )


def addition_program(num_digits: int = 1, base: int = 10) -> Program:
    """``3k + 1`` variables (a, b, s as in the module docstring), ``D = base``, one LINEAR EQ."""
    _check(num_digits, base)
    k = num_digits
    weights = [base**i for i in range(k)]
    coeffs = weights + weights + [-(base**i) for i in range(k + 1)]
    return make_program(3 * k + 1, base, [Linear(tuple(coeffs), tuple(range(3 * k + 1)), LinearOp.EQ, 0)])


def _digit_domains(value: int | None, count: int, base: int, name: str) -> list[int]:
    full = (1 << base) - 1
    if value is None:
        return [full] * count
    if not 0 <= value < base**count:
        raise ValueError(f"{name}: must be in [0, {base**count}) ({count} base-{base} digits), got {value}")
    return [1 << (value // base**i % base) for i in range(count)]


def addition_domains(a: int | None, b: int | None, s: int | None, num_digits: int = 1, base: int = 10) -> np.ndarray:
    """Domains ``uint64[1, 3k+1]`` (a batch of one) with known numbers fixed and ``None`` left open."""
    _check(num_digits, base)
    k = num_digits
    row = _digit_domains(a, k, base, "a") + _digit_domains(b, k, base, "b") + _digit_domains(s, k + 1, base, "s")
    return np.array([row], dtype=np.uint64)


def addition_values(values: Sequence[int] | np.ndarray, num_digits: int = 1, base: int = 10) -> tuple[int, int, int]:
    """Decode a solution (one value per variable) into the numbers ``(a, b, s)``."""
    k = num_digits
    vals = [int(v) for v in values]
    if len(vals) != 3 * k + 1:
        raise ValueError(f"values: expected {3 * k + 1} digits for num_digits={k}, got {len(vals)}")

    def number(digits: list[int]) -> int:
        return sum(d * base**i for i, d in enumerate(digits))

    return number(vals[:k]), number(vals[k : 2 * k]), number(vals[2 * k :])
