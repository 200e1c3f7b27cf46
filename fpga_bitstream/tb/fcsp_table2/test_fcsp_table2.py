"""fcsp_table2 against the reference model (engine/reference.py ``table2``): seeded random vectors and edge cases.

Combinational: set the inputs, wait 1 ns, read the outputs; both must equal the reference's. A program's table has
D rows of D bits (``Table2.columns`` gives the reference its transposition); the rows at or above D and the bits at
or above D are zero on the port, as in the engine's image. ``FCSP_UNIT_CASES`` sets the number of random vectors per
parameter set (default 4000), ``FCSP_UNIT_SEED`` the seed; a failure names the seed and the case, whose vector is
``random.Random(f"{seed}:{case}")``.
"""

from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cocotb
import pytest
from cocotb.triggers import Timer
from fpgacsp_proto.isa import Table2

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from unit_tb import reference  # noqa: E402  (tb/ is on the path from the line above)


@dataclass(frozen=True)
class Vector:
    dx: int
    dy: int
    rows: tuple[int, ...]  # D rows, bits below D
    d: int  # the domain size D


class TB:
    def __init__(self, dut: Any) -> None:
        self.dut = dut
        self.dw = json.loads(os.environ["FCSP_PARAMS"])["DW"]

    async def apply(self, v: Vector) -> list[int]:
        dut = self.dut
        dut.dx.value = v.dx
        dut.dy.value = v.dy
        dut.rows.value = sum(row << (a * self.dw) for a, row in enumerate(v.rows))
        await Timer(1, "ns")
        return [int(dut.ox.value), int(dut.oy.value)]

    async def check(self, v: Vector, name: str) -> None:
        got = await self.apply(v)
        want, _ = reference.table2(v.dx, v.dy, v.rows, Table2(0, 1, v.rows).columns(v.d))
        assert got == want, (
            f"{name}: (rtl != reference) [ox, oy] {hexes(got)} != {hexes(want)}; "
            f"D={v.d} dx={v.dx:#x} dy={v.dy:#x} rows={hexes(list(v.rows))}"
        )


def hexes(xs: list[int]) -> str:
    return "[" + ", ".join(hex(x) for x in xs) + "]"


def random_domain(rng: random.Random, d: int) -> int:
    roll = rng.random()
    if roll < 0.05:
        return 0
    if roll < 0.35:
        return 1 << rng.randrange(d)
    if roll < 0.50:
        return (1 << d) - 1
    x = rng.getrandbits(d)
    for _ in range(rng.randrange(3)):
        x &= rng.getrandbits(d)
    return x


def random_rows(rng: random.Random, d: int) -> tuple[int, ...]:
    roll = rng.random()
    if roll < 0.15:  # a relation of a known shape, shifted: x == y + s, x != y + s, x < y + s
        s = rng.randint(-2, 2)
        shape = rng.choice([lambda a, b: a == b + s, lambda a, b: a != b + s, lambda a, b: a < b + s])
        return tuple(sum(1 << b for b in range(d) if shape(a, b)) for a in range(d))
    sparse = rng.randrange(4)  # AND of that many more words: density 1/2 .. 1/16
    rows = []
    for _ in range(d):
        row = rng.getrandbits(d)
        for _ in range(sparse):
            row &= rng.getrandbits(d)
        rows.append(row if rng.random() > 0.1 else 0)
    return tuple(rows)


def random_vector(rng: random.Random, dw: int) -> Vector:
    d = rng.choice([dw, rng.randint(1, dw), rng.randint(1, min(dw, 8))])
    return Vector(random_domain(rng, d), random_domain(rng, d), random_rows(rng, d), d)


def edge_vectors(dw: int) -> list[Vector]:
    out = []
    for d in sorted({1, 2, dw}):
        full = (1 << d) - 1
        tables = {
            "empty": (0,) * d,
            "full": (full,) * d,
            "equal": tuple(1 << a for a in range(d)),
            "anti": tuple(1 << (d - 1 - a) for a in range(d)),
            "top corner": (0,) * (d - 1) + (1 << (d - 1),),
            "bottom corner": (1,) + (0,) * (d - 1),
            "last column": (1 << (d - 1),) * d,
            "last row": (0,) * (d - 1) + (full,),
        }
        doms = sorted({0, 1, 1 << (d - 1), full, full & ~1, full >> 1})
        for rows in tables.values():
            for dx in doms:
                for dy in doms:
                    out.append(Vector(dx, dy, rows, d))
    return out


@cocotb.test()
async def random_vectors_equal_the_reference(dut: Any) -> None:
    tb = TB(dut)
    seed, cases = int(os.environ["FCSP_SEED"]), int(os.environ["FCSP_CASES"])
    for n in range(cases):
        await tb.check(random_vector(random.Random(f"{seed}:{n}"), tb.dw), f"seed {seed} case {n}")
    dut._log.info(f"{cases} random vectors equal to the reference (DW={tb.dw}, seed {seed})")


@cocotb.test()
async def edge_cases_equal_the_reference(dut: Any) -> None:
    tb = TB(dut)
    vectors = edge_vectors(tb.dw)
    for n, v in enumerate(vectors):
        await tb.check(v, f"edge case {n}")
    dut._log.info(f"{len(vectors)} edge cases equal to the reference (DW={tb.dw})")


@pytest.mark.parametrize("parameters", [{"DW": 9}, {"DW": 64}], ids=lambda p: f"DW{p['DW']}")
def test_fcsp_table2(parameters: dict[str, int]) -> None:
    import sim

    env = {
        "FCSP_PARAMS": json.dumps(parameters),
        "FCSP_SEED": os.environ.get("FCSP_UNIT_SEED", "1"),
        "FCSP_CASES": os.environ.get("FCSP_UNIT_CASES", "4000"),
    }
    sim.run("fcsp_table2", "test_fcsp_table2", HERE, parameters, env)
