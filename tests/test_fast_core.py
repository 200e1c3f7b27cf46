"""The fast core against the reference model, bit for bit: domains, status, nodes, solutions and sweeps.

Determinism is the contract (DESIGN.md): for the same program, domains, priorities and options every
implementation returns identical results, however the batch is split across threads.
"""

from __future__ import annotations

import numpy as np
import pytest
from fpgacsp_proto.bitset import full_domains
from fpgacsp_proto.isa import AllDiff, Linear, LinearOp, Mode, Neq, Program, Status, Table2, make_program
from fpgacspd.engine import BatchResult, CompiledProgram, FastEngine, SolveOptions, reference_solve_batch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import BatchCase, batch_cases, solve_options

NODE_CAP = 2000  # node limit for random batches: the reference must search every instance too
# The bit-for-bit comparison is the contract, so it gets a multiple of the active profile's examples.
PROFILE_EXAMPLES = settings().max_examples  # a fresh settings object inherits the loaded profile


def describe(case: BatchCase, options: SolveOptions, fast: BatchResult, ref: BatchResult) -> str:
    rows = [
        f"  [{b}] domains={case.domains[b].tolist()} fast={f} ref={r}"
        for b in range(len(case.domains))
        if (f := _row(fast, b)) != (r := _row(ref, b))
    ]
    return f"program={case.program}\noptions={options}\n" + "\n".join(rows)


def _row(res: BatchResult, b: int) -> tuple:
    return (
        res.domains[b].tolist(),
        Status(int(res.status[b])).name,
        int(res.nodes[b]),
        int(res.solutions[b]),
        int(res.sweeps[b]),
    )


def assert_same(fast: BatchResult, ref: BatchResult, case: BatchCase, options: SolveOptions) -> None:
    assert fast.equals(ref), describe(case, options, fast, ref)


@settings(max_examples=4 * PROFILE_EXAMPLES)
@given(batch_cases(), solve_options(max_node_limit=NODE_CAP))
def test_fast_equals_reference(engine: FastEngine, case: BatchCase, options: SolveOptions) -> None:
    fast = engine.solve(case.program, case.domains, case.priorities, options)
    ref = reference_solve_batch(case.program, case.domains, case.priorities, options)
    assert_same(fast, ref, case, options)


@settings(max_examples=2 * PROFILE_EXAMPLES)
@given(batch_cases(max_batch=4, larger=True), solve_options(max_node_limit=NODE_CAP))
def test_fast_equals_reference_on_larger_programs(engine: FastEngine, case: BatchCase, options: SolveOptions) -> None:
    """Many overlapping constraints exercise the fast core's re-evaluation of only the changed propagators."""
    fast = engine.solve(case.program, case.domains, case.priorities, options)
    ref = reference_solve_batch(case.program, case.domains, case.priorities, options)
    assert_same(fast, ref, case, options)


@given(batch_cases(min_batch=8, max_batch=40), solve_options(max_node_limit=NODE_CAP))
def test_threads_do_not_change_results(case: BatchCase, options: SolveOptions) -> None:
    one, two = FastEngine(threads=1), FastEngine(threads=2)
    try:
        assert len(case.domains) >= two.min_parallel_batch  # the two-thread engine really splits the batch
        a = one.solve(case.program, case.domains, case.priorities, options)
        b = two.solve(case.program, case.domains, case.priorities, options)
        assert_same(b, a, case, options)
    finally:
        one.close()
        two.close()


@given(batch_cases(max_batch=4), solve_options(max_node_limit=NODE_CAP), st.sampled_from(["int64", "uint8", "F"]))
def test_input_layouts_and_dtypes(engine: FastEngine, case: BatchCase, options: SolveOptions, layout: str) -> None:
    """Signed or narrow word arrays and Fortran-ordered inputs are accepted, converted and never modified."""
    if layout == "F":
        doms = np.asfortranarray(case.domains)
    else:
        doms = case.domains.astype(layout) if case.program.domain_size <= 8 else case.domains.copy()
    before = doms.copy()
    fast = engine.solve(case.program, doms, case.priorities, options)
    assert np.array_equal(doms, before), "the engine modified its input"
    ref = reference_solve_batch(case.program, case.domains, case.priorities, options)
    assert_same(fast, ref, case, options)


def test_result_layout(engine: FastEngine) -> None:
    p = make_program(3, 3, [AllDiff((0, 1, 2), exact=True)])
    res = engine.solve(p, full_domains(5, 3, 3))
    assert res.batch_size == 5
    assert (res.domains.dtype, res.domains.shape) == (np.dtype(np.uint64), (5, 3))
    assert (res.status.dtype, res.status.shape) == (np.dtype(np.uint8), (5,))
    for field in (res.nodes, res.solutions, res.sweeps):
        assert (field.dtype, field.shape) == (np.dtype(np.int64), (5,))
    assert res.domains.tolist() == [[1, 2, 4]] * 5


@pytest.mark.parametrize("mode", list(Mode))
def test_empty_batch(engine: FastEngine, mode: Mode) -> None:
    p = make_program(2, 3, [Neq(0, 1)])
    doms = np.zeros((0, 2), dtype=np.uint64)
    options = SolveOptions(mode=mode)
    res = engine.solve(p, doms, None, options)
    assert res.batch_size == 0
    assert res.domains.shape == (0, 2)
    assert res.equals(reference_solve_batch(p, doms, None, options))


def test_compiled_program_gives_the_same_result(engine: FastEngine) -> None:
    p = make_program(4, 4, [AllDiff((0, 1, 2, 3), exact=True), Linear((1, 2), (0, 1), LinearOp.EQ, 5)])
    cp = engine.compile(p)
    assert isinstance(cp, CompiledProgram)
    assert (cp.num_vars, cp.domain_size, cp.num_constraints) == (4, 4, 2)
    doms = full_domains(3, 4, 4)
    options = SolveOptions(max_solutions=10)
    assert engine.solve(cp, doms, None, options).equals(engine.solve(p, doms, None, options))


def test_repeated_calls_are_identical(engine: FastEngine) -> None:
    p = queens(6)
    doms = full_domains(12, 6, 6)
    options = SolveOptions(max_solutions=100)
    assert engine.solve(p, doms, None, options).equals(engine.solve(p, doms, None, options))


# --- structured programs: deeper searches than the random ones --------------------------------------------


def queens(n: int) -> Program:
    """n-queens, one variable per column (value = row): rows differ, and both diagonals via NEQ offsets."""
    cons: list[AllDiff | Neq] = [AllDiff(tuple(range(n)), exact=True)]
    for i in range(n):
        for j in range(i + 1, n):
            cons += [Neq(i, j, j - i), Neq(i, j, i - j)]
    return make_program(n, n, cons)


@pytest.mark.parametrize(("n", "count"), [(4, 2), (5, 10), (6, 4)])
def test_queens_counts_match_reference(engine: FastEngine, n: int, count: int) -> None:
    p = queens(n)
    doms = full_domains(1, n, n)
    options = SolveOptions(max_solutions=1000)
    fast = engine.solve(p, doms, None, options)
    assert fast.solutions.tolist() == [count]
    assert fast.equals(reference_solve_batch(p, doms, None, options))


def test_eight_queens_count(engine: FastEngine) -> None:
    res = engine.solve(queens(8), full_domains(1, 8, 8), None, SolveOptions(max_solutions=1000))
    assert (res.solutions.tolist(), res.status.tolist()) == ([92], [Status.SOLVED])


def test_deep_search_grows_the_stack(engine: FastEngine) -> None:
    """A chain of 90 ternary variables branches 90 levels deep: past the kernel's initial stack of 64."""
    n = 90
    p = make_program(n, 3, [Neq(i, i + 1) for i in range(n - 1)])
    doms = full_domains(2, n, 3)
    prios = np.zeros((2, n, 3), dtype=np.uint8)
    prios[1, :, 2] = 1  # second instance prefers value 2 everywhere
    for options in (SolveOptions(), SolveOptions(max_solutions=40), SolveOptions(node_limit=150, max_solutions=99)):
        fast = engine.solve(p, doms, prios, options)
        ref = reference_solve_batch(p, doms, prios, options)
        assert fast.equals(ref), options
    assert engine.solve(p, doms, prios).nodes.tolist() == [n + 1, n + 1]  # the root, then one node per variable


def test_wide_domain_edges(engine: FastEngine) -> None:
    """D = 64: bit 63 survives a bound that allows it and TABLE2 columns over all 64 values."""
    top = 1 << 63
    rows = tuple(1 << (63 - a) for a in range(64))  # y = 63 - x
    p = make_program(
        3, 64, [Linear((1,), (0,), LinearOp.EQ, 63), Table2(0, 1, rows), Neq(2, 1, 63), AllDiff((0, 1, 2))]
    )
    doms = full_domains(2, 3, 64)
    doms[1, 2] = top | 2 | 1  # x2 loses 63 to the NEQ (x2 != x1 + 63) and 0 to the ALLDIFF
    for mode in Mode:
        options = SolveOptions(mode=mode, max_solutions=100)
        fast = engine.solve(p, doms, None, options)
        assert fast.equals(reference_solve_batch(p, doms, None, options)), mode
    res = engine.solve(p, doms, None, SolveOptions(mode=Mode.PROPAGATE))
    full = (1 << 64) - 1
    assert res.domains.tolist() == [[top, 1, full & ~top & ~1], [top, 1, 2]]
    assert res.status.tolist() == [Status.FIXPOINT, Status.SOLVED]
