"""Seeded random instances for the engine's cosimulation: programs of every constraint kind that fit an engine
configuration, initial domains (some empty, some fixed), priorities, and options (both modes, small node limits,
several solutions). The expected outcome of each is the reference model's (engine/reference.py).

Plain ``random.Random(seed)``, not hypothesis: a case set is made outside the simulator, written to a JSON file
the cocotb test reads, and any failing case is named by its seed and index, so it can be rerun alone.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from fpgacsp_proto.encoding import encode_program
from fpgacsp_proto.isa import (
    MAX_COEFF,
    MAX_RHS,
    AllDiff,
    Constraint,
    Kind,
    Linear,
    LinearOp,
    Mode,
    Neq,
    Program,
    Table2,
    make_program,
)
from fpgacspd.device.layout import cycle_count
from fpgacspd.engine.reference import SolveOptions, solve
from fpgacspd.rtl import EngineParams


@dataclass(frozen=True)
class Case:
    """One instance and what the reference model says of it (``cycles``: the cycle model)."""

    name: str
    program: str  # canonical encoding, hex
    domains: list[int]
    priorities: list[list[int]] | None
    mode: int
    node_limit: int
    max_solutions: int
    expect_domains: list[int]
    expect_status: int
    expect_nodes: int
    expect_solutions: int
    expect_sweeps: int
    expect_cycles: int


def expected(
    name: str,
    program: Program,
    domains: list[int],
    priorities: list[list[int]] | None,
    options: SolveOptions,
    lanes: int,
) -> Case:
    r = solve(program, domains, priorities, options)
    return Case(
        name=name,
        program=encode_program(program).hex(),
        domains=list(domains),
        priorities=priorities,
        mode=int(options.mode),
        node_limit=options.node_limit,
        max_solutions=options.max_solutions,
        expect_domains=list(r.domains),
        expect_status=int(r.status),
        expect_nodes=r.nodes,
        expect_solutions=r.solutions,
        expect_sweeps=r.sweeps,
        expect_cycles=cycle_count(r.sweeps, r.nodes, len(program.constraints), lanes),
    )


def _constraint(rng: random.Random, kind: Kind, n: int, d: int, params: EngineParams) -> Constraint | None:
    if kind == Kind.ALLDIFF:
        exact = d <= min(n, params.max_scope) and rng.random() < 0.3
        size = d if exact else rng.randint(1, min(n, params.max_scope))
        return AllDiff(tuple(rng.sample(range(n), size)), exact)
    if n < 2:
        return None
    x, y = rng.sample(range(n), 2)
    if kind == Kind.NEQ:
        k = rng.choice([0, 0, 1, -1, rng.randint(-d, d), rng.choice([MAX_COEFF, -MAX_COEFF, d, -d])])
        return Neq(x, y, k)
    if kind == Kind.TABLE2:
        density = rng.random()
        return Table2(x, y, tuple(sum(1 << b for b in range(d) if rng.random() < density) for _ in range(d)))
    size = rng.randint(1, min(n, params.max_scope))
    coeffs = tuple(
        rng.choice([1, -1, 2, -3, rng.randint(-5, 5) or 1, rng.choice([MAX_COEFF, -MAX_COEFF])]) for _ in range(size)
    )
    span = sum(abs(a) for a in coeffs) * (d - 1)
    rhs = rng.choice([rng.randint(-span, span), 0, rng.choice([MAX_RHS, -MAX_RHS])])
    return Linear(coeffs, tuple(rng.sample(range(n), size)), rng.choice([LinearOp.LE, LinearOp.EQ]), rhs)


def random_program(rng: random.Random, params: EngineParams) -> Program:
    n = rng.randint(1, params.num_vars)
    d = rng.choice(
        [rng.randint(1, min(params.domain_width, 6)), params.domain_width, rng.randint(1, params.domain_width)]
    )
    kinds = [k for k in Kind if params.supports(k)]
    constraints: list[Constraint] = []
    for _ in range(rng.randint(0, params.constraints)):
        c = _constraint(rng, rng.choice(kinds), n, d, params)
        if c is not None:
            constraints.append(c)
    return make_program(n, d, constraints)


def random_domains(rng: random.Random, program: Program) -> list[int]:
    d = program.domain_size
    full = (1 << d) - 1
    out = []
    for _ in range(program.num_vars):
        roll = rng.random()
        if roll < 0.02:
            out.append(0)
        elif roll < 0.2:
            out.append(1 << rng.randrange(d))
        elif roll < 0.6:
            out.append(full)
        else:
            out.append(rng.randint(1, full))
    return out


def random_cases(seed: int, count: int, params: EngineParams) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        program = random_program(rng, params)
        domains = random_domains(rng, program)
        priorities = None
        if rng.random() < 0.4:
            priorities = [
                [rng.randrange(256) if rng.random() < 0.7 else 7 for _ in range(program.domain_size)]
                for _ in range(program.num_vars)
            ]
        mode = Mode.PROPAGATE if rng.random() < 0.2 else Mode.SOLVE
        options = SolveOptions(
            mode=mode,
            node_limit=rng.choice([1, 2, 3, rng.randint(1, 40), 1000, 100_000]),
            max_solutions=rng.choice([1, 1, 2, 3, rng.randint(1, 50)]),
        )
        cases.append(expected(f"seed {seed} case {i}", program, domains, priorities, options, params.lanes))
    return cases


def write_cases(path: Path, cases: list[Case]) -> Path:
    path.write_text(json.dumps([asdict(c) for c in cases]))
    return path


def read_cases(path: Path) -> list[Case]:
    return [Case(**c) for c in json.loads(path.read_text())]


def sudoku_cases(path: Path, count: int, seed: int, lanes: int, node_limit: int = 1_000_000) -> list[Case]:
    """``count`` puzzles drawn (seeded) from a puzzle file of the repository's data, solved with two solutions
    asked for (the uniqueness check, so the search runs to the end of the tree)."""
    from fpgacsp.problems.sudoku import box_for_cells, load_puzzle_file, parse_sudoku, sudoku_domains, sudoku_program

    records = load_puzzle_file(str(path))
    picks = random.Random(seed).sample(range(len(records)), min(count, len(records)))
    out = []
    for i in sorted(picks):
        grid = parse_sudoku(records[i].puzzle)
        program = sudoku_program(box_for_cells(len(grid)))
        domains = [int(w) for w in sudoku_domains(grid[None, :])[0]]
        options = SolveOptions(mode=Mode.SOLVE, node_limit=node_limit, max_solutions=2)
        out.append(expected(f"{path.name} puzzle {i}", program, domains, None, options, lanes))
    return out


def params_env(params: EngineParams) -> dict[str, str]:
    """The configuration for the cocotb side (it runs in the simulator's process)."""
    return {"FCSP_PARAMS": json.dumps(asdict(params))}


def params_from_env() -> EngineParams:
    import os

    return EngineParams(**json.loads(os.environ["FCSP_PARAMS"]))
