"""fcsp_neq against the reference model (engine/reference.py ``neq``: x != y + k): seeded random vectors and edges.

Combinational: set the inputs, wait 1 ns, read the outputs; both must equal the reference's. The domains have bits
below D only (D <= DW, as the engine guarantees), and are often singletons, since only a fixed side removes anything.
``k`` ranges over small offsets around the domain and the ISA's extremes +-(2^31 - 1), and -2^31 (outside the ISA,
but the port carries it). ``FCSP_UNIT_CASES`` sets the number of random vectors per parameter set (default 4000),
``FCSP_UNIT_SEED`` the seed; a failure names the seed and the case, whose vector is ``random.Random(f"{seed}:{case}")``.
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
from fpgacsp_proto.isa import MAX_COEFF

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from unit_tb import reference  # noqa: E402  (tb/ is on the path from the line above)


@dataclass(frozen=True)
class Vector:
    dx: int
    dy: int
    k: int
    d: int  # the domain size D


class TB:
    def __init__(self, dut: Any) -> None:
        self.dut = dut
        self.dw = json.loads(os.environ["FCSP_PARAMS"])["DW"]

    async def apply(self, v: Vector) -> list[int]:
        dut = self.dut
        dut.dx.value = v.dx
        dut.dy.value = v.dy
        dut.k.value = v.k & 0xFFFF_FFFF  # two's complement
        await Timer(1, "ns")
        return [int(dut.ox.value), int(dut.oy.value)]

    async def check(self, v: Vector, name: str) -> None:
        got = await self.apply(v)
        want, _ = reference.neq(v.dx, v.dy, v.k, v.d)
        assert got == want, (
            f"{name}: (rtl != reference) [ox, oy] {hexes(got)} != {hexes(want)}; "
            f"D={v.d} dx={v.dx:#x} dy={v.dy:#x} k={v.k}"
        )


def hexes(xs: list[int]) -> str:
    return "[" + ", ".join(hex(x) for x in xs) + "]"


def random_domain(rng: random.Random, d: int) -> int:
    roll = rng.random()
    if roll < 0.05:
        return 0
    if roll < 0.60:
        return 1 << rng.randrange(d)
    if roll < 0.70:
        return (1 << d) - 1
    return rng.getrandbits(d)


def random_k(rng: random.Random, d: int) -> int:
    roll = rng.random()
    if roll < 0.6:
        return rng.randint(-d, d)
    if roll < 0.7:
        return rng.choice([0, 1, -1, d - 1, 1 - d, d, -d])
    if roll < 0.85:
        return rng.choice([MAX_COEFF, -MAX_COEFF, -MAX_COEFF - 1, MAX_COEFF - 1, 1 - MAX_COEFF])
    return rng.randint(-MAX_COEFF, MAX_COEFF)


def random_vector(rng: random.Random, dw: int) -> Vector:
    d = rng.choice([dw, rng.randint(1, dw), rng.randint(1, min(dw, 8))])
    return Vector(random_domain(rng, d), random_domain(rng, d), random_k(rng, d), d)


def edge_vectors(dw: int) -> list[Vector]:
    out = []
    for d in sorted({1, 2, dw}):
        full = (1 << d) - 1
        ends = sorted({0, 1, d // 2, d - 2, d - 1} & set(range(d)))
        ks = sorted({0, 1, -1, d - 1, 1 - d, d, -d, MAX_COEFF, -MAX_COEFF, -MAX_COEFF - 1})
        for a in ends:
            for b in ends:
                for k in ks:
                    out.append(Vector(1 << a, 1 << b, k, d))  # both fixed
                    out.append(Vector(full, 1 << b, k, d))  # y fixed
                    out.append(Vector(1 << a, full, k, d))  # x fixed
        for k in ks:
            out.append(Vector(0, 0, k, d))
            out.append(Vector(full, full, k, d))
            out.append(Vector(0, 1 << (d - 1), k, d))
            out.append(Vector(1 << (d - 1), 0, k, d))
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


@pytest.mark.parametrize("parameters", [{"DW": 8}, {"DW": 64}], ids=lambda p: f"DW{p['DW']}")
def test_fcsp_neq(parameters: dict[str, int]) -> None:
    import sim

    env = {
        "FCSP_PARAMS": json.dumps(parameters),
        "FCSP_SEED": os.environ.get("FCSP_UNIT_SEED", "1"),
        "FCSP_CASES": os.environ.get("FCSP_UNIT_CASES", "4000"),
    }
    sim.run("fcsp_neq", "test_fcsp_neq", HERE, parameters, env)
