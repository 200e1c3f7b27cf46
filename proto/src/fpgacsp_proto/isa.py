"""Constraint ISA v1: the program model every part of fpgacsp agrees on.

A program has ``num_vars`` variables over the domain ``{0 .. domain_size-1}`` and a tuple of
constraints. The exact propagation semantics live in ``docs/isa.md`` and in the daemon's reference
model; this module only fixes the shape of a program and what makes one valid, so that the client can
reject a bad program before it leaves the training job and the daemon can reject it again on arrival
with the same message.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ISA_VERSION = 1
MAX_DOMAIN_SIZE = 64
MAX_VARS = 1 << 20
MAX_CONSTRAINTS = 1 << 22
MAX_COEFF = (1 << 31) - 1
MAX_RHS = 1 << 62


class ProgramError(ValueError):
    """A program violates ISA v1; the message names the constraint, the field and the problem."""


class Kind(enum.IntEnum):
    ALLDIFF = 1
    NEQ = 2
    TABLE2 = 3
    LINEAR = 4


class LinearOp(enum.IntEnum):
    LE = 0  # sum(a_i * x_i) <= rhs
    EQ = 1  # sum(a_i * x_i) == rhs


class Mode(enum.IntEnum):
    PROPAGATE = 1
    SOLVE = 2


class Status(enum.IntEnum):
    """Per-instance outcome. Values are fixed: they travel on the wire and in device completions."""

    SOLVED = 1  # every domain a singleton (PROPAGATE) or a solution found (SOLVE)
    FIXPOINT = 2  # PROPAGATE reached a fixpoint with some domain still larger than one value
    CONFLICT = 3  # PROPAGATE produced an empty domain
    UNSAT = 4  # SOLVE exhausted the search without a solution
    LIMIT = 5  # SOLVE stopped at the node limit before it could decide


@dataclass(frozen=True)
class AllDiff:
    """Pairwise different. ``exact`` (as many variables as values) adds hidden singles."""

    vars: tuple[int, ...]
    exact: bool = False
    kind: Kind = field(default=Kind.ALLDIFF, init=False, repr=False)

    @property
    def scope(self) -> tuple[int, ...]:
        return self.vars


@dataclass(frozen=True)
class Neq:
    """``x != y + k``."""

    x: int
    y: int
    k: int = 0
    kind: Kind = field(default=Kind.NEQ, init=False, repr=False)

    @property
    def scope(self) -> tuple[int, ...]:
        return (self.x, self.y)


@dataclass(frozen=True)
class Table2:
    """Binary relation: ``rows[a]`` has bit ``b`` set when ``(x=a, y=b)`` is allowed."""

    x: int
    y: int
    rows: tuple[int, ...]
    kind: Kind = field(default=Kind.TABLE2, init=False, repr=False)

    @property
    def scope(self) -> tuple[int, ...]:
        return (self.x, self.y)

    @classmethod
    def from_matrix(cls, x: int, y: int, matrix: np.ndarray | Sequence[Sequence[bool]]) -> Table2:
        """Build from a ``D x D`` boolean matrix ``M[a, b]`` (x = a, y = b allowed)."""
        m = np.asarray(matrix, dtype=bool)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ProgramError(f"TABLE2 matrix: expected a square D x D matrix, got shape {m.shape}")
        rows = tuple(int(sum(1 << b for b in np.flatnonzero(row))) for row in m)
        return cls(x, y, rows)

    def columns(self, domain_size: int) -> tuple[int, ...]:
        """``columns[b]`` has bit ``a`` set when ``(x=a, y=b)`` is allowed."""
        cols = [0] * domain_size
        for a, row in enumerate(self.rows):
            for b in range(domain_size):
                if row >> b & 1:
                    cols[b] |= 1 << a
        return tuple(cols)


@dataclass(frozen=True)
class Linear:
    """``sum(coeffs[i] * vars[i]) op rhs`` with bounds propagation."""

    coeffs: tuple[int, ...]
    vars: tuple[int, ...]
    op: LinearOp
    rhs: int
    kind: Kind = field(default=Kind.LINEAR, init=False, repr=False)

    @property
    def scope(self) -> tuple[int, ...]:
        return self.vars


Constraint = AllDiff | Neq | Table2 | Linear


@dataclass(frozen=True)
class Program:
    """A validated ISA v1 program. Construct with :func:`make_program` or validate by hand."""

    num_vars: int
    domain_size: int
    constraints: tuple[Constraint, ...]

    def validate(self) -> Program:
        validate(self)
        return self

    @property
    def full_mask(self) -> int:
        return full_mask(self.domain_size)


def full_mask(domain_size: int) -> int:
    return (1 << domain_size) - 1


def make_program(num_vars: int, domain_size: int, constraints: Iterable[Constraint]) -> Program:
    """Normalise field types (lists to tuples, numpy ints to ints) and validate."""
    n = _as_int(num_vars, "num_vars")
    d = _as_int(domain_size, "domain_size")
    return Program(n, d, tuple(_normalise_at(i, c) for i, c in enumerate(constraints))).validate()


def _as_int(value: Any, where: str) -> int:
    """``operator.index`` semantics: ints and numpy ints pass, 2.5 and "3" do not."""
    if isinstance(value, bool):
        raise ProgramError(f"{where}: must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ProgramError(f"{where}: must be an integer, got {value!r}") from None


def _normalise_at(i: int, c: Constraint) -> Constraint:
    try:
        return _normalise(c)
    except (TypeError, ValueError) as exc:  # ProgramError included
        kind = getattr(getattr(c, "kind", None), "name", type(c).__name__)
        raise ProgramError(f"constraints[{i}] ({kind}): {exc}") from None


def _normalise(c: Constraint) -> Constraint:
    if isinstance(c, AllDiff):
        return AllDiff(_ints(c.vars, "vars"), bool(c.exact))
    if isinstance(c, Neq):
        return Neq(_as_int(c.x, "x"), _as_int(c.y, "y"), _as_int(c.k, "k"))
    if isinstance(c, Table2):
        return Table2(_as_int(c.x, "x"), _as_int(c.y, "y"), _ints(c.rows, "rows"))
    if isinstance(c, Linear):
        if c.op not in (LinearOp.LE, LinearOp.EQ):
            raise ValueError(f"op: must be LE (0) or EQ (1), got {c.op!r}")
        return Linear(_ints(c.coeffs, "coeffs"), _ints(c.vars, "vars"), LinearOp(c.op), _as_int(c.rhs, "rhs"))
    raise ProgramError(f"unknown constraint type {type(c).__name__}")


def _ints(values: Iterable[int], where: str) -> tuple[int, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ProgramError(f"{where}: must be a sequence of integers, got {values!r}")
    return tuple(_as_int(v, f"{where}[{j}]") for j, v in enumerate(values))


def validate(p: Program) -> None:
    """Raise :class:`ProgramError` naming the first problem found."""
    if not isinstance(p.num_vars, int) or not 1 <= p.num_vars <= MAX_VARS:
        raise ProgramError(f"num_vars: must be in [1, {MAX_VARS}], got {p.num_vars!r}")
    if not isinstance(p.domain_size, int) or not 1 <= p.domain_size <= MAX_DOMAIN_SIZE:
        raise ProgramError(f"domain_size: must be in [1, {MAX_DOMAIN_SIZE}], got {p.domain_size!r}")
    if len(p.constraints) > MAX_CONSTRAINTS:
        raise ProgramError(f"constraints: at most {MAX_CONSTRAINTS} allowed, got {len(p.constraints)}")
    for i, c in enumerate(p.constraints):
        _validate_constraint(p, i, c)


def _validate_constraint(p: Program, i: int, c: Constraint) -> None:
    if not isinstance(c, AllDiff | Neq | Table2 | Linear):
        raise ProgramError(f"constraints[{i}]: unknown constraint type {type(c).__name__}")
    where = f"constraints[{i}] ({c.kind.name})"
    if isinstance(c, AllDiff):
        _check_scope(p, where, "vars", c.vars)
        if c.exact and len(c.vars) != p.domain_size:
            raise ProgramError(
                f"{where}: exact requires as many variables as values, got {len(c.vars)} variables "
                f"for domain_size {p.domain_size}"
            )
    elif isinstance(c, Neq):
        _check_pair(p, where, c.x, c.y)
        if not -MAX_COEFF <= c.k <= MAX_COEFF:
            raise ProgramError(f"{where}: k = {c.k} is out of range [{-MAX_COEFF}, {MAX_COEFF}]")
    elif isinstance(c, Table2):
        _check_pair(p, where, c.x, c.y)
        if len(c.rows) != p.domain_size:
            raise ProgramError(f"{where}: matrix must be {p.domain_size} x {p.domain_size}, got {len(c.rows)} rows")
        for a, row in enumerate(c.rows):
            if row < 0 or row >> p.domain_size:
                raise ProgramError(f"{where}: matrix row {a} has bits at or above domain_size {p.domain_size}")
    else:
        _check_scope(p, where, "vars", c.vars)
        if len(c.coeffs) != len(c.vars):
            raise ProgramError(f"{where}: coeffs has {len(c.coeffs)} entries but vars has {len(c.vars)}")
        for j, a in enumerate(c.coeffs):
            if a == 0 or not -MAX_COEFF <= a <= MAX_COEFF:
                raise ProgramError(f"{where}: coeffs[{j}] = {a} must be nonzero and within +-{MAX_COEFF}")
        if c.op not in (LinearOp.LE, LinearOp.EQ):
            raise ProgramError(f"{where}: op must be LE or EQ, got {c.op!r}")
        if not -MAX_RHS <= c.rhs <= MAX_RHS:
            raise ProgramError(f"{where}: rhs = {c.rhs} is out of range +-2^62")


def _check_scope(p: Program, where: str, name: str, scope: Sequence[int]) -> None:
    if len(scope) == 0:
        raise ProgramError(f"{where}: {name} is empty")
    seen: set[int] = set()
    for j, v in enumerate(scope):
        if not 0 <= v < p.num_vars:
            raise ProgramError(f"{where}: {name}[{j}] = {v} is out of range [0, {p.num_vars})")
        if v in seen:
            raise ProgramError(f"{where}: {name}[{j}] = {v} is a duplicate variable in the scope")
        seen.add(v)


def _check_pair(p: Program, where: str, x: int, y: int) -> None:
    for name, v in (("x", x), ("y", y)):
        if not 0 <= v < p.num_vars:
            raise ProgramError(f"{where}: {name} = {v} is out of range [0, {p.num_vars})")
    if x == y:
        raise ProgramError(f"{where}: x and y are the same variable {x}")
