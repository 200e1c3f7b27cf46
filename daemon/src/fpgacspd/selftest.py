"""Known-answer self-test: small fixed programs whose exact results (domains, status, node, solution and
sweep counts) were computed with the reference model, run through the device like any batch.

Together they exercise every constraint kind, both modes, search with a solution count and an UNSAT
proof, so a device that passes agrees with the definition on each path a real batch takes.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from fpgacsp_proto.encoding import program_id
from fpgacsp_proto.isa import AllDiff, Linear, LinearOp, Mode, Neq, Program, Table2, make_program

from .engine import SolveOptions

if TYPE_CHECKING:
    from .device import Device


@dataclass(frozen=True)
class SelfTestCase:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class SelfTestReport:
    passed: bool
    cases: tuple[SelfTestCase, ...]
    duration_s: float


@dataclass(frozen=True)
class KnownAnswer:
    name: str
    program: Program
    domains: tuple[int, ...]
    options: SolveOptions
    # expected:
    result: tuple[int, ...]  # domains
    status: int
    nodes: int
    solutions: int
    sweeps: int


def _sudoku4() -> Program:
    units = [[r * 4 + c for c in range(4)] for r in range(4)] + [[r * 4 + c for r in range(4)] for c in range(4)]
    units += [[(br + i) * 4 + bc + j for i in range(2) for j in range(2)] for br in (0, 2) for bc in (0, 2)]
    return make_program(16, 4, [AllDiff(tuple(u), True) for u in units])


def _queens(n: int) -> Program:
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    return make_program(n, n, [Neq(i, j, k) for i, j in pairs for k in (0, i - j, j - i)])


def _mixed() -> Program:
    less = Table2.from_matrix(0, 1, [[a < b for b in range(4)] for a in range(4)])
    sums = Linear((1, 1, 1), (0, 1, 2), LinearOp.EQ, 6)
    return make_program(3, 4, [sums, less, Neq(1, 2, 1), Linear((2, 1), (0, 2), LinearOp.LE, 5)])


def _one_hot(values: list[int]) -> tuple[int, ...]:
    return tuple(1 << v for v in values)


_SUDOKU_GIVENS = "1.....4..2.....3"  # row-major 4x4, digits 1..4, '.' = empty
_SUDOKU_SOLUTION = [0, 3, 2, 1, 1, 2, 3, 0, 2, 1, 0, 3, 3, 0, 1, 2]


def known_answers() -> tuple[KnownAnswer, ...]:
    sudoku = _sudoku4()
    givens = tuple(15 if ch == "." else 1 << (int(ch) - 1) for ch in _SUDOKU_GIVENS)
    return (
        KnownAnswer("sudoku4_propagate", sudoku, givens, SolveOptions(Mode.PROPAGATE),
                    _one_hot(_SUDOKU_SOLUTION), 1, 1, 1, 3),
        KnownAnswer("queens6_count", _queens(6), (63,) * 6, SolveOptions(Mode.SOLVE, max_solutions=100),
                    _one_hot([1, 3, 5, 0, 2, 4]), 1, 79, 4, 151),
        KnownAnswer("pigeonhole_unsat", make_program(4, 3, [AllDiff((0, 1, 2, 3))]), (7,) * 4, SolveOptions(),
                    (0,) * 4, 4, 11, 0, 20),
        KnownAnswer("mixed_propagate", _mixed(), (15,) * 3, SolveOptions(Mode.PROPAGATE),
                    (7, 14, 14), 2, 1, 0, 3),
        KnownAnswer("mixed_solve", _mixed(), (15,) * 3, SolveOptions(Mode.SOLVE, max_solutions=10),
                    (1, 8, 8), 1, 7, 3, 14),
    )  # fmt: skip


def run_self_test(device: Device, propagate: tuple[type[Exception], ...] = ()) -> SelfTestReport:
    """Run every known answer on ``device`` (on the caller's thread: the device thread) and compare exactly.

    An exception fails its case, except those of the ``propagate`` types: a recovering device wants to know
    that its self-test hit a fault (and reset again), not that the fault looked like a wrong answer.
    """
    start = time.perf_counter()
    cases = []
    loaded: set[str] = set()
    for ka in known_answers():
        pid = program_id(ka.program)
        try:
            device.load_program(pid, ka.program)
            loaded.add(pid)
            doms = np.array([ka.domains, ka.domains], dtype=np.uint64)  # two rows: both must agree
            res = device.run_batch(pid, ka.program, doms, None, ka.options)
            got = (tuple(int(x) for x in res.domains[0]), int(res.status[0]), int(res.nodes[0]),
                   int(res.solutions[0]), int(res.sweeps[0]))  # fmt: skip
            want = (ka.result, ka.status, ka.nodes, ka.solutions, ka.sweeps)
            same_rows = all(np.array_equal(a[0], a[1]) for a in (res.domains, res.status, res.nodes, res.sweeps))
            ok = got == want and same_rows
            detail = "ok" if ok else f"expected (domains, status, nodes, solutions, sweeps) = {want}, got {got}"
        except propagate:
            raise
        except Exception as e:  # a failing device must fail the test, not the daemon
            ok, detail = False, f"raised {e!r}"
        cases.append(SelfTestCase(ka.name, ok, detail))
    for pid in loaded:
        with contextlib.suppress(Exception):  # unloading is best effort: the results above are what count
            device.unload_program(pid)
    return SelfTestReport(all(c.passed for c in cases), tuple(cases), time.perf_counter() - start)
