"""Hypothesis strategies: small random ISA v1 programs, domains, priorities, options and batches.

Programs are kept small (N 1..6, D 1..5 most of the time) so that a brute-force oracle can enumerate every
assignment, and the reference model can search them exhaustively in milliseconds. About one program in
eight uses a wide domain (up to D = 64) with few variables, to reach the word-width and bit-63 edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from fpgacsp_proto.isa import (
    MAX_COEFF,
    MAX_RHS,
    AllDiff,
    Constraint,
    Linear,
    LinearOp,
    Mode,
    Neq,
    Program,
    Table2,
    make_program,
)
from fpgacspd.engine import DEFAULT_NODE_LIMIT, SolveOptions
from hypothesis import strategies as st

WIDE_DOMAIN_SIZES = (6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 62, 63, 64)
Priorities = list[list[int]]


@dataclass(frozen=True)
class Case:
    """One instance: a program, its initial domains (one int per variable) and optional priorities."""

    program: Program
    domains: list[int]
    priorities: Priorities | None

    def search_space(self) -> int:
        """Number of assignments within the initial domains (what the brute-force oracle enumerates)."""
        return math.prod(d.bit_count() for d in self.domains)


@dataclass(frozen=True)
class BatchCase:
    """A batch of instances of one program, as the engines take it."""

    program: Program
    domains: np.ndarray  # uint64[B, N]
    priorities: np.ndarray | None  # uint8[B, N, D]


def full(domain_size: int) -> int:
    return (1 << domain_size) - 1


@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, int]:
    """(N, D): mostly tiny; sometimes a wide domain with one to three variables."""
    if draw(st.integers(0, 7)) == 0:
        return draw(st.integers(1, 3)), draw(st.sampled_from(WIDE_DOMAIN_SIZES))
    return draw(st.integers(1, 6)), draw(st.integers(1, 5))


def _pair(draw: st.DrawFn, n: int) -> tuple[int, int]:
    x = draw(st.integers(0, n - 1))
    y = draw(st.integers(0, n - 2))
    return x, y + (y >= x)  # y != x


def _scope(draw: st.DrawFn, n: int, size: int) -> tuple[int, ...]:
    return tuple(draw(st.permutations(range(n)))[:size])


@st.composite
def alldiffs(draw: st.DrawFn, n: int, d: int) -> AllDiff:
    if n >= d and draw(st.booleans()):
        return AllDiff(_scope(draw, n, d), exact=True)
    return AllDiff(_scope(draw, n, draw(st.integers(1, n))), exact=False)


@st.composite
def neqs(draw: st.DrawFn, n: int, d: int, extreme: bool = False) -> Neq:
    x, y = _pair(draw, n)
    k = draw(st.sampled_from((-MAX_COEFF, MAX_COEFF)) if extreme else st.integers(-d, d))
    return Neq(x, y, k)


@st.composite
def table2s(draw: st.DrawFn, n: int, d: int, dense: bool = False) -> Table2:
    """Random relation; ``dense`` forbids at most two pairs per row, so it rarely wipes a domain out."""
    x, y = _pair(draw, n)
    if dense:
        row = st.sets(st.integers(0, d - 1), max_size=2).map(lambda vs: full(d) & ~sum(1 << v for v in vs))
    else:
        row = st.one_of(
            st.integers(0, full(d)), st.just(full(d)), st.just(0), st.sampled_from([1 << b for b in range(d)])
        )
    return Table2(x, y, tuple(draw(row) for _ in range(d)))


@st.composite
def linears(draw: st.DrawFn, n: int, d: int, extreme: bool = False) -> Linear:
    scope = _scope(draw, n, draw(st.integers(1, min(n, 4))))
    coeff = st.sampled_from((-MAX_COEFF, -1, 1, MAX_COEFF) if extreme else (-4, -3, -2, -1, 1, 2, 3, 4))
    coeffs = tuple(draw(coeff) for _ in scope)
    lo = sum(min(0, a * (d - 1)) for a in coeffs)
    hi = sum(max(0, a * (d - 1)) for a in coeffs)
    op = draw(st.sampled_from(LinearOp))
    if extreme:
        rhs = draw(st.sampled_from((-MAX_RHS, MAX_RHS)))
    elif op == LinearOp.LE and draw(st.booleans()):
        rhs = draw(st.integers(lo - 2, hi + 2))
    else:  # planted: some assignment meets the bound (or misses EQ by one), so EQ is not hopeless
        rhs = sum(a * draw(st.integers(0, d - 1)) for a in coeffs) + draw(st.integers(0, 1))
    return Linear(coeffs, scope, op, rhs)


@st.composite
def constraints(draw: st.DrawFn, n: int, d: int, extreme: bool = False) -> Constraint:
    kinds: list[st.SearchStrategy[Constraint]] = [alldiffs(n, d), linears(n, d, extreme)]
    if n >= 2:
        kinds += [neqs(n, d, extreme), table2s(n, d)]
    return draw(st.one_of(kinds))


@st.composite
def programs(draw: st.DrawFn, max_constraints: int = 6, allow_extreme: bool = False) -> Program:
    """A valid program mixing every constraint type (NEQ and TABLE2 need two variables)."""
    n, d = draw(shapes())
    extreme = allow_extreme and draw(st.integers(0, 9)) == 0
    cons = draw(st.lists(constraints(n, d, extreme), max_size=max_constraints))
    return make_program(n, d, cons)


@st.composite
def larger_programs(draw: st.DrawFn) -> Program:
    """5..12 variables and 3..15 overlapping constraints: longer propagation chains and deeper searches
    than the oracle can enumerate, for comparing implementations against each other."""
    n, d = draw(st.integers(5, 12)), draw(st.integers(2, 6))
    kinds = st.one_of(neqs(n, d), neqs(n, d), alldiffs(n, d), table2s(n, d, dense=True), constraints(n, d))
    return make_program(n, d, draw(st.lists(kinds, min_size=3, max_size=15)))


def domain_words(d: int) -> st.SearchStrategy[int]:
    """One variable's initial domain, never empty: often full, sometimes a singleton or a few values.

    Empty domains are injected per row by ``domain_rows`` instead: drawn per variable they would make
    most instances trivial root conflicts.
    """
    return st.one_of(
        st.just(full(d)),
        st.just(full(d)),
        st.integers(1, full(d)),
        st.sets(st.integers(0, d - 1), min_size=1, max_size=4).map(lambda vs: sum(1 << v for v in vs)),
        st.sampled_from([1 << b for b in range(d)]),
    )


@st.composite
def domain_rows(draw: st.DrawFn, program: Program, allow_empty: bool = True) -> list[int]:
    """Initial domains of one instance; with ``allow_empty``, about one row in ten has an empty domain."""
    rows = [draw(domain_words(program.domain_size)) for _ in range(program.num_vars)]
    if not allow_empty or draw(st.integers(0, 9)) != 5:  # not 0: hypothesis favours boundary values
        return rows
    rows[draw(st.integers(0, program.num_vars - 1))] = 0  # make sure empty domains are exercised
    return rows


@st.composite
def priority_rows(draw: st.DrawFn, program: Program) -> Priorities:
    """uint8 priorities as nested lists; a narrow range most of the time so that ties are common."""
    top = draw(st.sampled_from((1, 3, 255)))
    value = st.integers(0, top)
    return [[draw(value) for _ in range(program.domain_size)] for _ in range(program.num_vars)]


@st.composite
def cases(draw: st.DrawFn, with_priorities: bool | None = None, allow_empty: bool = True) -> Case:
    """A single instance. ``with_priorities=None`` lets hypothesis choose."""
    program = draw(programs())
    domains = draw(domain_rows(program, allow_empty))
    use_prio = draw(st.booleans()) if with_priorities is None else with_priorities
    return Case(program, domains, draw(priority_rows(program)) if use_prio else None)


@st.composite
def batch_cases(draw: st.DrawFn, min_batch: int = 1, max_batch: int = 20, larger: bool = False) -> BatchCase:
    """B instances of one random program with mixed domains, and priorities for all or for none."""
    program = draw(larger_programs() if larger else programs(allow_extreme=True))
    b = draw(st.integers(min_batch, max_batch))
    rows = [draw(domain_rows(program)) for _ in range(b)]
    domains = np.array(rows, dtype=np.uint64).reshape(b, program.num_vars)
    prios = None
    if draw(st.booleans()):
        prios = np.array([draw(priority_rows(program)) for _ in range(b)], dtype=np.uint8)
        prios = prios.reshape(b, program.num_vars, program.domain_size)
    return BatchCase(program, domains, prios)


@st.composite
def solve_options(draw: st.DrawFn, max_node_limit: int = DEFAULT_NODE_LIMIT) -> SolveOptions:
    """Both modes; node limits from 1 (root only) up; solution caps from 1 to effectively unbounded."""
    mode = draw(st.sampled_from(Mode))
    limits = [1, 2, 3, 5, 17, 100, 1000]
    node_limit = draw(st.sampled_from([x for x in [*limits, max_node_limit] if x <= max_node_limit]))
    max_solutions = draw(st.sampled_from((1, 1, 2, 3, 10, 10**6)))
    return SolveOptions(mode=mode, node_limit=node_limit, max_solutions=max_solutions)
