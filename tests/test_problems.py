"""Problem builders and loaders: program shapes, file formats, and solving each family with the engine."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fpgacsp import LocalSolver
from fpgacsp.problems import (
    Cage,
    Graph,
    PuzzleFileError,
    PuzzleRecord,
    addition_domains,
    addition_program,
    addition_values,
    addition_vars,
    check_coloring,
    check_latin_square,
    check_queens_solution,
    check_sudoku_solution,
    coloring_program,
    format_sudoku,
    killer_program,
    load_dimacs,
    load_puzzle_file,
    load_qcp,
    parse_sudoku,
    qcp_domains,
    qcp_program,
    queens_program,
    sudoku_domains,
    sudoku_program,
    sudoku_units,
)
from fpgacsp_proto import AllDiff, Linear, LinearOp, Mode, Neq, Status, full_domains, singleton_values
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

DATA = Path(__file__).resolve().parents[1] / "data"

# the example puzzle of Wikipedia's Sudoku article and its unique solution
WIKI_PUZZLE = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
WIKI_SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
PUZZLE_4 = ".2..4....1.....3"
SOLUTION_4 = "1234432131422413"
# chromatic numbers from the data README
CHI = {"myciel6": 7, "queen6_6": 7, "queen7_7": 7, "queen8_8": 9, "huck": 11, "jean": 10, "miles250": 8, "games120": 9}


@pytest.fixture(scope="module")
def solver() -> Iterator[LocalSolver]:
    with LocalSolver() as s:
        yield s


def pattern_grid(box: int) -> np.ndarray:
    """A valid full grid of any box size (the standard shifted-rows pattern)."""
    s = box * box
    return np.array([(box * (r % box) + r // box + c) % s for r in range(s) for c in range(s)], dtype=np.int64)


# ---------------------------------------------------------------- sudoku


@pytest.mark.parametrize("box", [2, 3, 4, 5])
def test_sudoku_program_shape(box: int) -> None:
    s = box * box
    p = sudoku_program(box)
    assert (p.num_vars, p.domain_size, len(p.constraints)) == (s * s, s, 3 * s)
    assert all(isinstance(c, AllDiff) and c.exact and len(c.vars) == s for c in p.constraints)
    # rows, then columns, then boxes
    assert p.constraints[0].scope == tuple(range(s))
    assert p.constraints[s].scope == tuple(range(0, s * s, s))
    assert set(p.constraints[2 * s].scope) == {r * s + c for r in range(box) for c in range(box)}
    # every cell is in exactly three units
    counts = np.bincount([v for c in p.constraints for v in c.scope], minlength=s * s)
    assert (counts == 3).all()


@pytest.mark.parametrize("box", [1, 6])
def test_sudoku_program_rejects_box(box: int) -> None:
    with pytest.raises(ValueError, match="box"):
        sudoku_program(box)


@st.composite
def grids(draw: st.DrawFn) -> np.ndarray:
    box = draw(st.sampled_from([2, 3, 4, 5]))
    s = box * box
    return draw(arrays(np.int64, s * s, elements=st.integers(-1, s - 1)))


@settings(max_examples=60, deadline=None)
@given(grid=grids(), blank=st.sampled_from([".", "0", "_", "-"]))
def test_parse_format_round_trip(grid: np.ndarray, blank: str) -> None:
    text = format_sudoku(grid, blank=blank)
    assert len(text) == grid.size
    assert np.array_equal(parse_sudoku(text), grid)
    assert np.array_equal(parse_sudoku(text.lower()), grid)
    assert format_sudoku(parse_sudoku(text), blank=blank) == text


def test_parse_sudoku_notation() -> None:
    assert parse_sudoku("1.2_3-40" + "1234....").tolist()[:9] == [0, -1, 1, -1, 2, -1, 3, -1, 0]
    big = parse_sudoku("9Aag" + "." * 252)
    assert big[:4].tolist() == [8, 9, 9, 15]
    assert format_sudoku(big)[:4] == "9AAG"
    assert parse_sudoku("P" + "." * 624)[0] == 24
    assert format_sudoku(np.array([24] + [-1] * 624))[0] == "P"
    assert parse_sudoku("  " + WIKI_PUZZLE + "\n")[0] == 4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1" * 80, "got 80"),
        ("." * 10 + "x" + "." * 70, r"position 10 \(row 2, column 2\): character 'x'"),
        ("5" + "." * 15, "position 0.*'5'.*1..4"),
        ("H" + "." * 255, "'H'"),
        ("Q" + "." * 624, "'Q' is not a digit 1..25"),
    ],
)
def test_parse_sudoku_errors(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sudoku(line)


def test_format_sudoku_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=r"values\[3\] = 4"):
        format_sudoku(np.array([0, 1, 2, 4] + [-1] * 12))


def test_sudoku_domains() -> None:
    grid = parse_sudoku(WIKI_PUZZLE)
    doms = sudoku_domains(np.stack([grid, grid]))
    assert doms.shape == (2, 81) and doms.dtype == np.uint64
    assert doms[0, 0] == 1 << 4 and doms[1, 2] == 0x1FF
    assert np.array_equal(singleton_values(doms[0]), grid)
    assert sudoku_domains(grid).shape == (1, 81)
    with pytest.raises(ValueError, match=r"-1 .* 0\.\.8"):
        sudoku_domains(np.full((1, 81), 9))
    with pytest.raises(ValueError, match="cells, got 80"):
        sudoku_domains(np.zeros((1, 80), dtype=np.int64))


def test_check_sudoku_solution() -> None:
    sol = parse_sudoku(WIKI_SOLUTION)
    assert check_sudoku_solution(sol)
    for box in (2, 3, 4, 5):
        assert check_sudoku_solution(pattern_grid(box), box)
    bad = sol.copy()
    bad[[0, 1]] = bad[[1, 0]]  # swapping two cells of a row breaks their columns
    assert not check_sudoku_solution(bad)
    blanked = sol.copy()
    blanked[40] = -1
    assert not check_sudoku_solution(blanked)
    assert not check_sudoku_solution(sol, box=2)


def test_load_puzzle_file_formats(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text(
        "# comment\n\n"
        f"{WIKI_PUZZLE}  # a tdoku comment\n"
        f"{PUZZLE_4}\tanything\n"
        f"{WIKI_PUZZLE},{WIKI_SOLUTION},1\n"
        f"{PUZZLE_4},{SOLUTION_4}\n"
    )
    recs = load_puzzle_file(f)
    assert recs == [
        PuzzleRecord(WIKI_PUZZLE, None, None),
        PuzzleRecord(PUZZLE_4, None, None),
        PuzzleRecord(WIKI_PUZZLE, WIKI_SOLUTION, 1),
        PuzzleRecord(PUZZLE_4, SOLUTION_4, None),
    ]
    assert len(load_puzzle_file(f, limit=2)) == 2
    assert load_puzzle_file(f, limit=0) == []
    header = tmp_path / "h.csv"
    header.write_text(f"puzzle,solution\n{PUZZLE_4},{SOLUTION_4}\n")
    assert load_puzzle_file(header) == [PuzzleRecord(PUZZLE_4, SOLUTION_4, None)]


def test_load_puzzle_file_data() -> None:
    recs = load_puzzle_file(DATA / "sudoku" / "magictour_top1465.csv")
    assert len(recs) == 1465
    assert all(r.nsol == 1 and r.solution is not None for r in recs)
    serg = load_puzzle_file(DATA / "sudoku" / "serg_benchmark.csv", limit=10)
    assert len(serg) == 10 and all(r.nsol == 2 for r in serg)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1234", "got 4"),
        (f"{PUZZLE_4},{SOLUTION_4},x", "nsol: expected an integer"),
        (f"{PUZZLE_4},{SOLUTION_4[:-1]}.", "solution has blanks"),
        (f"{PUZZLE_4},{WIKI_SOLUTION}", "81 cells but the puzzle has 16"),
        (f"{PUZZLE_4},{SOLUTION_4},1,2", "4 fields"),
        (f"{PUZZLE_4[:-1]}9,{SOLUTION_4}", "puzzle: position 15"),
    ],
)
def test_load_puzzle_file_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(f"# header\n{PUZZLE_4},{SOLUTION_4},1\n{line}\n")
    with pytest.raises(PuzzleFileError, match=rf"bad.csv:3: .*{message}"):
        load_puzzle_file(f)


def test_known_puzzles_solved(solver: LocalSolver) -> None:
    for puzzle, solution in ((PUZZLE_4, SOLUTION_4), (WIKI_PUZZLE, WIKI_SOLUTION)):
        grid = parse_sudoku(puzzle)
        box = round(len(grid) ** 0.25)
        res = solver.solve(sudoku_program(box), sudoku_domains(grid), max_solutions=2)
        assert res.status[0] == Status.SOLVED and res.solutions[0] == 1
        values = singleton_values(res.domains[0])
        assert format_sudoku(values) == solution
        assert check_sudoku_solution(values, box)


@pytest.mark.parametrize("box", [4, 5])
def test_large_sudoku_solved(solver: LocalSolver, box: int) -> None:
    full = pattern_grid(box)
    rng = np.random.default_rng(box)
    puzzle = np.where(rng.random(full.size) < 0.4, -1, full)  # 40% blanks: a few search nodes
    res = solver.solve(sudoku_program(box), sudoku_domains(puzzle), node_limit=100_000)
    assert res.status[0] == Status.SOLVED
    values = singleton_values(res.domains[0])
    assert check_sudoku_solution(values, box)
    assert np.all((puzzle < 0) | (values == puzzle))


def test_empty_4x4_has_288_solutions(solver: LocalSolver) -> None:
    res = solver.solve(sudoku_program(2), sudoku_domains(np.full(16, -1)), max_solutions=1000)
    assert res.solutions[0] == len(all_4x4_grids()) == 288


def all_4x4_grids() -> list[list[int]]:
    """Every valid 4x4 Sudoku, by plain backtracking (independent of the engine)."""
    units = sudoku_units(2)
    out: list[list[int]] = []
    grid = [-1] * 16

    def fill(i: int) -> None:
        if i == 16:
            out.append(list(grid))
            return
        for v in range(4):
            if all(grid[c] != v for u in units if i in u for c in u):
                grid[i] = v
                fill(i + 1)
                grid[i] = -1

    fill(0)
    return out


# ---------------------------------------------------------------- queens


@pytest.mark.parametrize(("n", "count"), [(1, 1), (2, 0), (3, 0), (4, 2), (5, 10), (6, 4), (7, 40), (8, 92)])
def test_queens_solution_counts(solver: LocalSolver, n: int, count: int) -> None:
    res = solver.solve(queens_program(n), full_domains(1, n, n), max_solutions=10_000)
    assert res.solutions[0] == count
    assert res.status[0] == (Status.SOLVED if count else Status.UNSAT)


@pytest.mark.parametrize("n", [4, 5, 6, 7, 8, 12, 20])
def test_queens_first_solution_is_valid(solver: LocalSolver, n: int) -> None:
    res = solver.solve(queens_program(n), full_domains(1, n, n))
    assert res.status[0] == Status.SOLVED
    assert check_queens_solution(singleton_values(res.domains[0]).tolist())


def test_queens_program_shape() -> None:
    p = queens_program(5)
    assert (p.num_vars, p.domain_size, len(p.constraints)) == (5, 5, 1 + 2 * 10)
    assert p.constraints[0] == AllDiff((0, 1, 2, 3, 4), exact=True)
    assert Neq(1, 3, 2) in p.constraints and Neq(1, 3, -2) in p.constraints
    assert not check_queens_solution([0, 1, 2, 3])
    assert check_queens_solution([1, 3, 0, 2])


# ---------------------------------------------------------------- colouring


def test_load_dimacs_every_file() -> None:
    files = sorted((DATA / "coloring").glob("*.col"))
    assert {f.stem for f in files} == set(CHI)
    for f in files:
        g = load_dimacs(f)
        assert g.num_vertices > 0 and len(g.edges) > 0
        assert all(0 <= u < v < g.num_vertices for u, v in g.edges)
        assert len(set(g.edges)) == len(g.edges) and list(g.edges) == sorted(g.edges)


def test_load_dimacs_dedupes_and_reports_errors(tmp_path: Path) -> None:
    f = tmp_path / "g.col"
    f.write_text("c tiny\np edge 3 4\ne 1 2\ne 2 1\ne 3 2\n\ne 1 3\n")
    assert load_dimacs(f) == Graph(3, ((0, 1), (0, 2), (1, 2)))
    for body, message in [
        ("p edge 3 1\ne 1 4\n", r"g.col:2: vertex 4 is out of range \[1, 3\]"),
        ("e 1 2\n", "g.col:1: an 'e' line before"),
        ("p edge 3 1\ne 2 2\n", "g.col:2: .*self-loop"),
        ("p edge 3 1\nx 1 2\n", "g.col:2: unknown line type 'x'"),
        ("p edge three 1\n", "g.col:1: vertex count 'three'"),
        ("c nothing\n", "no 'p edge V E' line"),
    ]:
        f.write_text(body)
        with pytest.raises(ValueError, match=message):
            load_dimacs(f)


def test_coloring_smallest_file_with_chi_colours(solver: LocalSolver) -> None:
    smallest = min((DATA / "coloring").glob("*.col"), key=lambda p: p.stat().st_size)
    g = load_dimacs(smallest)
    k = CHI[smallest.stem]
    p = coloring_program(g, k)
    assert (p.num_vars, p.domain_size, len(p.constraints)) == (g.num_vertices, k, len(g.edges))
    assert all(isinstance(c, Neq) and c.k == 0 for c in p.constraints)
    res = solver.solve(p, full_domains(1, g.num_vertices, k), node_limit=200_000)
    assert res.status[0] == Status.SOLVED
    colors = singleton_values(res.domains[0]).tolist()
    assert check_coloring(g, colors)
    assert all(colors[u] != colors[v] for u, v in g.edges)


def test_coloring_unsat_with_too_few_colours(solver: LocalSolver) -> None:
    k4 = Graph.from_edges(4, [(u, v) for u, v in itertools.combinations(range(4), 2)])
    res = solver.solve(coloring_program(k4, 3), full_domains(1, 4, 3))
    assert res.status[0] == Status.UNSAT
    res = solver.solve(coloring_program(k4, 4), full_domains(1, 4, 4), max_solutions=100)
    assert res.solutions[0] == 24  # 4! ways to colour K4 with 4 colours
    assert not check_coloring(k4, [0, 1, 2, 2])


# ---------------------------------------------------------------- QCP


def test_load_qcp() -> None:
    instances = load_qcp(DATA / "qcp" / "qcp_grids.txt")
    assert len(instances) == 30
    assert {i.n for i in instances} == {10, 15}
    for inst in instances:
        assert inst.grid.shape == (inst.n, inst.n) and inst.grid.dtype == np.int64
        assert inst.grid.min() >= -1 and inst.grid.max() < inst.n


def test_load_qcp_errors(tmp_path: Path) -> None:
    f = tmp_path / "q.txt"
    f.write_text("# c\nok,2,0 1 1 0\nbad,2,0 1 1\n")
    with pytest.raises(ValueError, match=r"q\.txt:3: grid has 3 cells, expected N\*N = 4"):
        load_qcp(f)
    f.write_text("bad,2,0 1 2 0\n")
    with pytest.raises(ValueError, match=r"q\.txt:1: grid values"):
        load_qcp(f)


def test_qcp_first_instance(solver: LocalSolver) -> None:
    inst = load_qcp(DATA / "qcp" / "qcp_grids.txt")[0]
    p = qcp_program(inst.n)
    assert (p.num_vars, p.domain_size, len(p.constraints)) == (inst.n**2, inst.n, 2 * inst.n)
    doms = qcp_domains(inst.grid)
    assert doms.shape == (1, inst.n**2)
    assert np.array_equal(singleton_values(doms[0]), inst.grid.reshape(-1))
    res = solver.solve(p, doms, node_limit=100_000)
    assert res.status[0] in (Status.SOLVED, Status.LIMIT)
    if res.status[0] == Status.SOLVED:
        values = singleton_values(res.domains[0])
        assert check_latin_square(values, inst.grid)
        assert not check_latin_square(values, np.where(inst.grid >= 0, (inst.grid + 1) % inst.n, -1))


# ---------------------------------------------------------------- killer

# cages (digits) over the unique solution 1234/4321/3142/2413; the cages alone fix the grid
KILLER_4 = [
    Cage(3, (0, 1)),
    Cage(7, (2, 3)),
    Cage(7, (4, 8)),
    Cage(5, (5, 6)),
    Cage(3, (7, 11)),
    Cage(5, (9, 10)),
    Cage(6, (12, 13)),
    Cage(4, (14, 15)),
]


def test_killer_program_shape() -> None:
    p = killer_program([Cage(3, (0, 1)), Cage(4, (5,))], box=2)
    base = sudoku_program(2).constraints
    assert p.constraints[: len(base)] == base
    assert p.constraints[len(base) :] == (
        Linear((1, 1), (0, 1), LinearOp.EQ, 1),
        AllDiff((0, 1), exact=False),
        Linear((1,), (5,), LinearOp.EQ, 3),
    )


def test_killer_unique_solution(solver: LocalSolver) -> None:
    matching = [g for g in all_4x4_grids() if all(sum(g[c] + 1 for c in cg.cells) == cg.total for cg in KILLER_4)]
    assert len(matching) == 1
    res = solver.solve(killer_program(KILLER_4, box=2), sudoku_domains(np.full(16, -1)), max_solutions=2)
    assert res.status[0] == Status.SOLVED and res.solutions[0] == 1
    values = singleton_values(res.domains[0])
    assert values.tolist() == matching[0]
    assert format_sudoku(values) == "1234432131422413"


@pytest.mark.parametrize(
    ("cages", "message"),
    [
        ([Cage(3, (0, 1)), Cage(5, (1, 2))], r"cages\[1\] \(total 5\) overlaps cages\[0\] at cell 1"),
        ([Cage(3, (0, 0))], "repeats cell 0"),
        ([Cage(3, (0, 16))], "cell 16 is off the grid"),
        ([Cage(3, ())], "has no cells"),
    ],
)
def test_killer_rejects_bad_cages(cages: list[Cage], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        killer_program(cages, box=2)


# ---------------------------------------------------------------- addition


def test_addition_program_layout() -> None:
    p = addition_program(2, 10)
    assert (p.num_vars, p.domain_size) == (7, 10)
    assert p.constraints == (Linear((1, 10, 1, 10, -1, -10, -100), tuple(range(7)), LinearOp.EQ, 0),)
    doms = addition_domains(47, None, 105, num_digits=2)
    assert doms.shape == (1, 7) and doms.dtype == np.uint64
    assert singleton_values(doms[0]).tolist() == [7, 4, -1, -1, 5, 0, 1]
    assert addition_values([7, 4, 8, 5, 5, 0, 1], 2) == (47, 58, 105)
    with pytest.raises(ValueError, match="a: must be in"):
        addition_domains(100, None, None, num_digits=2)
    with pytest.raises(ValueError, match="base"):
        addition_program(1, 65)
    with pytest.raises(ValueError, match="largest coefficient"):
        addition_program(10, 10)


def test_addition_every_one_digit_pair(solver: LocalSolver) -> None:
    pairs = list(itertools.product(range(10), repeat=2))
    doms = np.concatenate([addition_domains(a, b, None) for a, b in pairs])
    res = solver.solve(addition_program(), doms, mode=Mode.PROPAGATE)
    values = singleton_values(res.domains)
    for row, (a, b) in enumerate(pairs):
        assert res.status[row] == Status.SOLVED
        assert addition_values(values[row]) == (a, b, a + b)


def test_addition_counts_pairs_for_a_given_sum(solver: LocalSolver) -> None:
    sums = list(range(20))
    doms = np.concatenate([addition_domains(None, None, s) for s in sums])
    res = solver.solve(addition_program(), doms, max_solutions=1000)
    for row, s in enumerate(sums):
        expected = sum(1 for a in range(10) for b in range(10) if a + b == s)
        assert res.solutions[row] == expected
        assert res.status[row] == (Status.SOLVED if expected else Status.UNSAT)
    # base 4, two digits: a + b = 13 has pairs (a, b) with a, b in [0, 16)
    res = solver.solve(addition_program(2, 4), addition_domains(None, None, 13, 2, 4), max_solutions=1000)
    assert res.solutions[0] == 14
    a, b, s = addition_values(singleton_values(res.domains[0]), 2, 4)
    assert a + b == s == 13


def test_addition_with_carries_is_one_equation_per_column() -> None:
    p = addition_program(3, 10, carries=True)
    # variables: a0 a1 a2 | b0 b1 b2 | s0 s1 s2 s3 | c1 c2
    assert (p.num_vars, p.domain_size) == (12, 10) == (addition_vars(3, carries=True), 10)
    assert p.constraints == (
        Linear((1, 1, -1, -10), (0, 3, 6, 10), LinearOp.EQ, 0),
        Linear((1, 1, -1, 1, -10), (1, 4, 7, 10, 11), LinearOp.EQ, 0),
        Linear((1, 1, -1, 1, -10), (2, 5, 8, 11, 9), LinearOp.EQ, 0),
    )
    assert addition_program(1, carries=True).constraints == (Linear((1, 1, -1, -10), (0, 1, 2, 3), LinearOp.EQ, 0),)
    doms = addition_domains(47, None, None, 2, carries=True)
    assert doms.shape == (1, 8) and singleton_values(doms[0]).tolist() == [7, 4, -1, -1, -1, -1, -1, -1]
    assert addition_values([7, 4, 8, 5, 5, 0, 1, 1], 2, carries=True) == (47, 58, 105)
    assert addition_program(15, carries=True).num_vars == 60  # past the single equation's 9-digit cap
    with pytest.raises(ValueError, match=r"use carries=True"):
        addition_program(10)


@pytest.mark.parametrize("k", [1, 2, 4, 15])
def test_addition_with_carries_computes_every_sum_by_propagation(solver: LocalSolver, k: int) -> None:
    rng = np.random.default_rng(k)
    pairs = [(int(rng.integers(10**k)), int(rng.integers(10**k))) for _ in range(50)]
    doms = np.concatenate([addition_domains(a, b, None, k, carries=True) for a, b in pairs])
    res = solver.solve(addition_program(k, carries=True), doms, mode=Mode.PROPAGATE)
    for row, (a, b) in enumerate(pairs):
        assert res.status[row] == Status.SOLVED
        assert addition_values(singleton_values(res.domains[row]), k, carries=True) == (a, b, a + b)


def test_addition_with_carries_counts_the_same_pairs_as_the_single_equation(solver: LocalSolver) -> None:
    """Both forms describe one relation: for every two-digit sum, the same number of (a, b), hence every carry is
    0 or 1 without a domain of its own (a carry of 2 would add pairs)."""
    sums = list(range(0, 199, 7))
    single = np.concatenate([addition_domains(None, None, s, 2) for s in sums])
    column = np.concatenate([addition_domains(None, None, s, 2, carries=True) for s in sums])
    a = solver.solve(addition_program(2), single, max_solutions=1000)
    b = solver.solve(addition_program(2, carries=True), column, max_solutions=1000)
    want = [sum(1 for x in range(100) for y in range(100) if x + y == s) for s in sums]
    assert list(a.solutions) == list(b.solutions) == want
