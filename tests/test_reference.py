"""The reference model against a brute-force oracle, and its schedule (sweeps, nodes) on hand-worked cases.

The oracle enumerates every assignment inside the initial domains and checks each constraint's predicate
directly; it shares no code with ``reference.py``, so agreement means the propagators are sound, detect
violations once fixed, and the search is complete and counts correctly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from fpgacsp_proto.isa import AllDiff, Constraint, LinearOp, Mode, Neq, Program, Status, Table2, make_program
from fpgacspd.engine import reference
from fpgacspd.engine.reference import Result, SolveOptions, solve
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import Case, cases, constraints, domain_words, full, shapes

MAX_SPACE = 3000  # assignments the oracle enumerates per example; keeps every property well under a second

Sample = tuple[Program, Constraint, list[int]]  # a one-constraint program and nonempty domains

PROPAGATE = SolveOptions(mode=Mode.PROPAGATE)
COUNT_ALL = SolveOptions(max_solutions=10**9)

# --- the oracle ---------------------------------------------------------------------------------------


def satisfies(c: Constraint, values: Sequence[int]) -> bool:
    """The constraint's predicate on a full assignment, straight from the ISA definition."""
    if isinstance(c, AllDiff):
        picked = [values[v] for v in c.vars]
        return len(set(picked)) == len(picked)
    if isinstance(c, Neq):
        return values[c.x] != values[c.y] + c.k
    if isinstance(c, Table2):
        return bool(c.rows[values[c.x]] >> values[c.y] & 1)
    total = sum(a * values[v] for a, v in zip(c.coeffs, c.vars, strict=True))
    return total <= c.rhs if c.op == LinearOp.LE else total == c.rhs


def values_of(word: int) -> list[int]:
    return [v for v in range(word.bit_length()) if word >> v & 1]


def assignments(domains: Sequence[int]) -> Iterator[tuple[int, ...]]:
    return itertools.product(*(values_of(d) for d in domains))


def oracle_solutions(program: Program, domains: Sequence[int]) -> list[tuple[int, ...]]:
    return [a for a in assignments(domains) if all(satisfies(c, a) for c in program.constraints)]


def as_words(values: Sequence[int]) -> tuple[int, ...]:
    return tuple(1 << v for v in values)


def as_values(words: Sequence[int]) -> tuple[int, ...]:
    assert all(reference.is_singleton(w) for w in words), f"not all singletons: {words}"
    return tuple(w.bit_length() - 1 for w in words)


def small(case: Case) -> Case:
    assume(case.search_space() <= MAX_SPACE)
    return case


def subset(inner: Sequence[int], outer: Sequence[int]) -> bool:
    return all(i & ~o == 0 for i, o in zip(inner, outer, strict=True))


# --- propagators, one constraint at a time ------------------------------------------------------------


@st.composite
def single_constraint(draw: st.DrawFn) -> Sample:
    """A one-constraint program and nonempty domains for its variables."""
    n, d = draw(shapes())
    program = make_program(n, d, [draw(constraints(n, d))])
    doms = [draw(domain_words(program.domain_size)) for _ in range(program.num_vars)]
    return program, program.constraints[0], doms


def scope_outputs(c: Constraint, doms: Sequence[int], d: int) -> list[int]:
    """Propagator outputs on the scope, with a conflict flag folded into all-empty outputs."""
    outs, conflict = reference.apply_constraint(c, doms, d)
    return [0] * len(outs) if conflict else outs


@given(single_constraint())
def test_propagator_never_widens(sample: Sample) -> None:
    program, c, doms = sample
    outs, _ = reference.apply_constraint(c, doms, program.domain_size)
    assert subset(outs, [doms[v] for v in c.scope])


@given(single_constraint())
def test_propagator_keeps_every_supported_value(sample: Sample) -> None:
    """Sound: a value with a supporting tuple (in this constraint alone) is never removed; conflict means none."""
    program, c, doms = sample
    scope_doms = [doms[v] for v in c.scope]
    assume(math.prod(d.bit_count() for d in scope_doms) <= MAX_SPACE)
    outs, conflict = reference.apply_constraint(c, doms, program.domain_size)
    supported = [0] * len(c.scope)
    values = list(range(program.num_vars))
    for tup in assignments(scope_doms):
        for v, x in zip(c.scope, tup, strict=True):
            values[v] = x
        if satisfies(c, values):
            supported = [s | 1 << x for s, x in zip(supported, tup, strict=True)]
    if conflict:
        assert supported == [0] * len(c.scope), "conflict reported although a supporting tuple exists"
    else:
        assert subset(supported, outs), f"removed a supported value: supported {supported}, kept {outs}"


@given(single_constraint(), st.data())
def test_propagator_detects_violation_once_fixed(sample: Sample, data: st.DataObject) -> None:
    program, c, _ = sample
    values = [data.draw(st.integers(0, program.domain_size - 1)) for _ in range(program.num_vars)]
    outs = scope_outputs(c, as_words(values), program.domain_size)
    if satisfies(c, values):
        assert outs == [1 << values[v] for v in c.scope]
    else:
        assert 0 in outs, f"violated constraint {c} on fixed values {values} not detected"


@given(single_constraint(), st.data())
def test_propagator_is_monotone(sample: Sample, data: st.DataObject) -> None:
    """Narrower inputs give narrower outputs: the reason the fixpoint does not depend on the schedule."""
    program, c, outer = sample
    inner = [o & data.draw(st.integers(0, full(program.domain_size))) for o in outer]
    assume(all(inner))
    assert subset(scope_outputs(c, inner, program.domain_size), scope_outputs(c, outer, program.domain_size))


# --- propagation --------------------------------------------------------------------------------------


@given(cases())
def test_propagate_keeps_every_solution_value(case: Case) -> None:
    case = small(case)
    sols = oracle_solutions(case.program, case.domains)
    r = solve(case.program, case.domains, None, PROPAGATE)
    assert r.nodes == 1
    if not sols:
        assert r.status in (Status.CONFLICT, Status.FIXPOINT)
    else:
        assert r.status != Status.CONFLICT
        for sol in sols:
            assert subset(as_words(sol), r.domains), f"solution {sol} pruned to {r.domains}"


@given(cases())
def test_propagate_result_shape(case: Case) -> None:
    """Narrowing only; CONFLICT is all zeros; SOLVED is a solution and counts one; FIXPOINT has a wide domain."""
    r = solve(case.program, case.domains, None, PROPAGATE)
    assert r.sweeps >= 1
    if r.status == Status.CONFLICT:
        assert r.domains == (0,) * case.program.num_vars
        assert r.solutions == 0
        return
    assert subset(r.domains, case.domains)
    assert all(r.domains)
    if r.status == Status.SOLVED:
        assert r.solutions == 1
        values = as_values(r.domains)
        assert all(satisfies(c, values) for c in case.program.constraints)
    else:
        assert r.status == Status.FIXPOINT
        assert r.solutions == 0
        assert not all(reference.is_singleton(d) for d in r.domains)


@given(cases())
def test_fixpoint_is_idempotent(case: Case) -> None:
    first = solve(case.program, case.domains, None, PROPAGATE)
    assume(first.status != Status.CONFLICT)
    again = solve(case.program, first.domains, None, PROPAGATE)
    assert again.domains == first.domains
    assert again.status == first.status
    assert again.sweeps == 1


@given(cases(), st.data())
def test_empty_initial_domain_is_a_one_sweep_conflict(case: Case, data: st.DataObject) -> None:
    domains = list(case.domains)
    domains[data.draw(st.integers(0, len(domains) - 1))] = 0
    zeros = (0,) * case.program.num_vars
    assert solve(case.program, domains, None, PROPAGATE) == Result(zeros, Status.CONFLICT, 1, 0, 1)
    assert solve(case.program, domains, case.priorities, SolveOptions()) == Result(zeros, Status.UNSAT, 1, 0, 1)


# --- search -------------------------------------------------------------------------------------------


@given(cases())
def test_solve_finds_a_solution_exactly_when_one_exists(case: Case) -> None:
    case = small(case)
    sols = oracle_solutions(case.program, case.domains)
    r = solve(case.program, case.domains, case.priorities, SolveOptions())
    if sols:
        assert r.status == Status.SOLVED
        assert r.solutions == 1
        assert as_values(r.domains) in sols
    else:
        assert r.status == Status.UNSAT
        assert r.solutions == 0
        assert r.domains == (0,) * case.program.num_vars
    assert r.sweeps >= r.nodes >= 1


@given(cases())
def test_solve_counts_every_solution(case: Case) -> None:
    case = small(case)
    exact = len(oracle_solutions(case.program, case.domains))
    r = solve(case.program, case.domains, case.priorities, COUNT_ALL)
    assert r.solutions == exact
    assert r.status == (Status.SOLVED if exact else Status.UNSAT)


@given(cases(), st.integers(1, 5))
def test_solution_cap(case: Case, cap: int) -> None:
    case = small(case)
    exact = len(oracle_solutions(case.program, case.domains))
    r = solve(case.program, case.domains, case.priorities, SolveOptions(max_solutions=cap))
    assert r.solutions == min(cap, exact)
    first = solve(case.program, case.domains, case.priorities, SolveOptions())
    assert r.domains == first.domains, "the first solution must not depend on max_solutions"
    assert r.nodes >= first.nodes


def independent_branch_choice(doms: Sequence[int], prios: Sequence[Sequence[int]] | None) -> tuple[int, int]:
    """The branching rule spelled out: fewest values (lowest index), then highest priority (lowest value)."""
    unfixed = [i for i, d in enumerate(doms) if d.bit_count() > 1]
    fewest = min(doms[i].bit_count() for i in unfixed)
    var = next(i for i in unfixed if doms[i].bit_count() == fewest)
    vals = values_of(doms[var])
    if prios is None:
        return var, vals[0]
    best = max(prios[var][v] for v in vals)
    return var, next(v for v in vals if prios[var][v] == best)


@given(cases(with_priorities=True, allow_empty=False))
def test_root_branch_takes_highest_priority_value(case: Case) -> None:
    case = small(case)
    root = solve(case.program, case.domains, None, PROPAGATE)
    assume(root.status == Status.FIXPOINT)
    choice = reference.branch_choice(root.domains, case.priorities)
    assert choice == independent_branch_choice(root.domains, case.priorities)
    assert reference.branch_choice(root.domains, None) == independent_branch_choice(root.domains, None)
    var, val = choice
    sols = oracle_solutions(case.program, case.domains)
    r = solve(case.program, case.domains, case.priorities, SolveOptions())
    assert r.status == (Status.SOLVED if sols else Status.UNSAT)
    if any(s[var] == val for s in sols):
        # the left branch (var = val) is explored first and search is complete: the first solution is in it
        assert as_values(r.domains)[var] == val


@given(cases())
def test_node_limit_one_stops_at_the_root_unless_it_decides(case: Case) -> None:
    root = solve(case.program, case.domains, None, PROPAGATE)
    r = solve(case.program, case.domains, case.priorities, SolveOptions(node_limit=1))
    assert r.nodes == 1
    assert r.sweeps == root.sweeps
    if root.status == Status.CONFLICT:
        assert r.status == Status.UNSAT
    elif root.status == Status.SOLVED:
        assert (r.status, r.solutions, r.domains) == (Status.SOLVED, 1, root.domains)
    else:
        assert (r.status, r.solutions, r.domains) == (Status.LIMIT, 0, root.domains)


@given(cases(), st.integers(1, 30))
def test_node_limit_bounds_nodes(case: Case, limit: int) -> None:
    case = small(case)
    unlimited = solve(case.program, case.domains, case.priorities, SolveOptions())
    r = solve(case.program, case.domains, case.priorities, SolveOptions(node_limit=limit))
    assert r.nodes <= limit
    if unlimited.nodes <= limit:
        assert r == unlimited
    else:
        assert r.status == Status.LIMIT
        assert r.nodes == limit


# --- hand-worked cases: exact values, sweeps and nodes --------------------------------------------------


def test_neq_chain_sweeps() -> None:
    """x0 = 0 and x0 != x1 != x2 over {0, 1}: one variable fixed per sweep, plus the quiet last sweep."""
    p = make_program(3, 2, [Neq(1, 0), Neq(2, 1)])
    assert solve(p, [0b01, 0b11, 0b11], None, PROPAGATE) == Result((0b01, 0b10, 0b01), Status.SOLVED, 1, 1, 3)


def test_no_constraints_counts_the_binary_tree() -> None:
    """Two free binary variables: root, two inner nodes and four leaves; one sweep each."""
    p = make_program(2, 2, [])
    r = solve(p, [0b11, 0b11], None, SolveOptions(max_solutions=100))
    assert r == Result((0b01, 0b01), Status.SOLVED, 7, 4, 7)
    assert solve(p, [0b11, 0b11], None, SolveOptions()) == Result((0b01, 0b01), Status.SOLVED, 3, 1, 3)


def test_limit_after_a_solution_returns_that_solution() -> None:
    """LIMIT reports the first solution when one was found before the limit (else the root fixpoint)."""
    p = make_program(2, 2, [])
    r = solve(p, [0b11, 0b11], None, SolveOptions(node_limit=3, max_solutions=100))
    assert r == Result((0b01, 0b01), Status.LIMIT, 3, 1, 3)
    r = solve(p, [0b11, 0b11], None, SolveOptions(node_limit=2, max_solutions=100))
    assert r == Result((0b11, 0b11), Status.LIMIT, 2, 0, 2)


def test_priorities_pick_the_first_value() -> None:
    p = make_program(1, 4, [])
    prios = [[0, 9, 3, 9]]
    r = solve(p, [0b1111], prios, SolveOptions())
    assert r.domains == (0b0010,)  # value 1: priority 9, ties broken by the lower value


def test_alldiff_naked_single() -> None:
    assert reference.alldiff([0b001, 0b011, 0b111], False, 3) == ([0b001, 0b010, 0b110], False)


def test_alldiff_two_fixed_to_the_same_value_empties_both() -> None:
    assert reference.alldiff([0b01, 0b01], False, 2) == ([0, 0], False)


def test_exact_alldiff_hidden_single_and_missing_value() -> None:
    # value 2 only fits the last variable; value 0 has no place
    assert reference.alldiff([0b011, 0b011, 0b110], True, 3) == ([0b011, 0b011, 0b100], False)
    assert reference.alldiff([0b010, 0b110, 0b110], True, 3)[1] is True
    # one variable is the only place of two values
    assert reference.alldiff([0b011, 0b100, 0b100], True, 3)[1] is True


def test_neq_offset_and_out_of_range_values() -> None:
    assert reference.neq(0b111, 0b001, 2, 3) == ([0b011, 0b001], False)  # x != 0 + 2
    assert reference.neq(0b001, 0b111, -1, 3) == ([0b001, 0b101], False)  # y != 0 + 1
    assert reference.neq(0b111, 0b100, 1, 3) == ([0b111, 0b100], False)  # 2 + 1 is not a value


def test_table2_arc_consistency() -> None:
    rows = (0b010, 0b000, 0b101)  # allowed: (0, 1), (2, 0), (2, 2)
    t = Table2(0, 1, rows)
    assert reference.table2(0b111, 0b011, rows, t.columns(3)) == ([0b101, 0b011], False)


def test_linear_bounds() -> None:
    # 2x + 3y <= 7 over 0..4: x <= 3, y <= 2
    assert reference.linear([0b11111, 0b11111], [2, 3], LinearOp.LE, 7, 5) == ([0b01111, 0b00111], False)
    # x - y == 3 over 0..4: x >= 3, y <= 1
    assert reference.linear([0b11111, 0b11111], [1, -1], LinearOp.EQ, 3, 5) == ([0b11000, 0b00011], False)


@pytest.mark.parametrize("d", [1, 2, 63, 64])
def test_linear_interval_edges(d: int) -> None:
    """The top value d - 1 (bit 63 when d = 64) survives exactly when the bound allows it."""
    top = d - 1
    assert reference.linear([full(d)], [1], LinearOp.LE, top, d) == ([full(d)], False)
    assert reference.linear([full(d)], [1], LinearOp.EQ, top, d) == ([1 << top], False)
    assert reference.linear([full(d)], [-1], LinearOp.LE, -top, d) == ([1 << top], False)
    assert reference.linear([full(d)], [1], LinearOp.LE, -1, d) == ([0], False)


def test_solve_options_reject_nonpositive_limits() -> None:
    with pytest.raises(ValueError, match=r"node_limit: must be an integer in \[1, 2\^63 - 1\], got 0"):
        SolveOptions(node_limit=0)
    with pytest.raises(ValueError, match=r"max_solutions: must be an integer in \[1, 2\^63 - 1\], got 0"):
        SolveOptions(max_solutions=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_solutions": 2**64}, r"max_solutions: must be an integer in \[1, 2\^63 - 1\], got 18446744073709551616"),
        ({"node_limit": 2**63}, r"node_limit: must be an integer in \[1, 2\^63 - 1\], got 9223372036854775808"),
        ({"node_limit": True}, r"node_limit: must be an integer in \[1, 2\^63 - 1\], got True"),
        ({"node_limit": 2.0}, r"node_limit: must be an integer in \[1, 2\^63 - 1\], got 2\.0"),
        ({"mode": 7}, r"mode: must be PROPAGATE \(1\) or SOLVE \(2\), got 7"),
    ],
)
def test_solve_options_reject_what_the_kernels_cannot_take(kwargs: dict, message: str) -> None:
    """Limits are int64 in the kernels and on the device; an unknown mode must not silently run SOLVE."""
    with pytest.raises(ValueError, match=message):
        SolveOptions(**kwargs)


def test_solve_options_normalise_numpy_and_int_modes() -> None:
    opts = SolveOptions(mode=1, node_limit=np.int64(5))  # type: ignore[arg-type]
    assert opts.mode is Mode.PROPAGATE and type(opts.node_limit) is int
