"""fcsp_choose against the reference model (engine/reference.py ``branch_choice``): seeded random vectors and edges.

Pipelined (fcsp_choose.sv): set the inputs, read ``candidates_q`` after one clock edge, ``var_index_early`` after
two (it must be ``var_index`` of the next edge) and ``found``/``var_index`` after three. The reference's choice is
taken over the active variables with a nonempty domain (the engine branches only at a fixpoint, where no domain is
empty; the unit counts a variable as a candidate when it has two values or more, so an empty one is none): ``found``
must be 1 exactly when one of them is unfixed, and then ``var_index`` must be the reference's variable (fewest
values, ties to the lowest index). ``FCSP_UNIT_CASES`` sets the number of random vectors per parameter set (default
4000), ``FCSP_UNIT_SEED`` the seed; a failure names the seed and the case, whose vector is
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
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge, Timer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from unit_tb import reference  # noqa: E402  (tb/ is on the path from the line above)


@dataclass(frozen=True)
class Vector:
    doms: list[int]  # NV domains
    active: list[bool]  # NV flags


def expected(v: Vector) -> int | None:
    """The reference's branching variable among the active, nonempty variables; None when all are fixed."""
    index = [i for i, (d, a) in enumerate(zip(v.doms, v.active, strict=True)) if a and d != 0]
    doms = [v.doms[i] for i in index]
    if all(reference.is_singleton(d) for d in doms):
        return None
    var, _ = reference.branch_choice(doms, None)
    return index[var]


class TB:
    def __init__(self, dut: Any) -> None:
        self.dut = dut
        Clock(dut.clk, 10, unit="ns").start()  # a task of its own (cocotb 2)
        p = json.loads(os.environ["FCSP_PARAMS"])
        self.nv, self.dw = p["NV"], p["DW"]

    async def apply(self, v: Vector) -> int | None:
        dut = self.dut
        dut.doms.value = sum(x << (i * self.dw) for i, x in enumerate(v.doms))
        dut.active.value = sum(int(a) << i for i, a in enumerate(v.active))
        await RisingEdge(dut.clk)
        await ReadOnly()
        candidates = bool(dut.candidates_q.value)
        await RisingEdge(dut.clk)
        await ReadOnly()
        early = int(dut.var_index_early.value)
        await RisingEdge(dut.clk)
        await ReadOnly()
        got = int(dut.var_index.value) if dut.found.value else None
        assert candidates == (got is not None), f"candidates_q {int(candidates)} but found {int(got is not None)}"
        assert got is None or early == got, f"var_index_early {early} != var_index {got} one edge later"
        await Timer(1, "ns")  # out of the read-only phase before the next inputs
        return got

    async def check(self, v: Vector, name: str) -> None:
        got = await self.apply(v)
        want = expected(v)
        assert got == want, (
            f"{name}: (rtl != reference) variable {got} != {want} (None: found = 0); "
            f"doms={[hex(d) for d in v.doms]} active={''.join(str(int(a)) for a in v.active)}"
        )


def random_vector(rng: random.Random, nv: int, dw: int) -> Vector:
    d = rng.choice([dw, rng.randint(1, dw), rng.randint(1, min(dw, 6))])
    full = (1 << d) - 1
    fixed = rng.choice([0.0, 0.5, 0.9, 1.0])  # share of singletons: from none to all (found = 0)
    empty = rng.choice([0.0, 0.0, 0.05, 0.3])
    counts = rng.sample(range(2, d + 1), min(d - 1, rng.randint(1, 3)))  # few popcounts, so that ties abound
    doms = []
    for _ in range(nv):
        roll = rng.random()
        if roll < empty:
            doms.append(0)
        elif roll < empty + fixed * (1 - empty):
            doms.append(1 << rng.randrange(d))
        elif counts and rng.random() < 0.8:
            doms.append(sum(1 << b for b in rng.sample(range(d), rng.choice(counts))))
        else:
            doms.append(rng.getrandbits(d) | (1 << rng.randrange(d)) if rng.random() < 0.5 else full)
    if rng.random() < 0.5:
        n = rng.choice([nv, rng.randint(0, nv)])  # as the engine drives it: v < N
        active = [i < n for i in range(nv)]
    else:
        p = rng.random()
        active = [rng.random() < p for _ in range(nv)]
    return Vector(doms, active)


def edge_vectors(nv: int, dw: int) -> list[Vector]:
    out = []
    on = [True] * nv
    for d in sorted({1, 2, dw}):
        full = (1 << d) - 1
        pair = 3 if d >= 2 else 1
        out.append(Vector([full] * nv, on))  # all tied: the first
        out.append(Vector([full] * nv, [False] * nv))  # none active
        out.append(Vector([0] * nv, on))  # all empty
        out.append(Vector([1 << (i % d) for i in range(nv)], on))  # all fixed
        out.append(Vector([1] * (nv - 1) + [full], on))  # only the last unfixed
        out.append(Vector([0] * (nv - 1) + [full], on))
        out.append(Vector([full] * (nv - 1) + [pair], on))  # the last has the fewest
        out.append(Vector([full] * nv, [False] * (nv - 1) + [True]))  # only the last active
        out.append(Vector([pair] + [full] * (nv - 1), [False] + [True] * (nv - 1)))  # the fewest is inactive
        for i in sorted({0, 1, nv // 2, nv - 2, nv - 1} & set(range(nv))):
            out.append(Vector([full] * i + [pair] + [full] * (nv - i - 1), on))
            out.append(Vector([1] * i + [full] + [pair] * (nv - i - 1), on))
            out.append(Vector([0] * i + [full] + [1] * (nv - i - 1), [j != i + 1 for j in range(nv)]))
    return out


@cocotb.test()
async def random_vectors_equal_the_reference(dut: Any) -> None:
    tb = TB(dut)
    seed, cases = int(os.environ["FCSP_SEED"]), int(os.environ["FCSP_CASES"])
    for n in range(cases):
        await tb.check(random_vector(random.Random(f"{seed}:{n}"), tb.nv, tb.dw), f"seed {seed} case {n}")
    dut._log.info(f"{cases} random vectors equal to the reference (NV={tb.nv}, DW={tb.dw}, seed {seed})")


@cocotb.test()
async def edge_cases_equal_the_reference(dut: Any) -> None:
    tb = TB(dut)
    vectors = edge_vectors(tb.nv, tb.dw)
    for n, v in enumerate(vectors):
        await tb.check(v, f"edge case {n}")
    dut._log.info(f"{len(vectors)} edge cases equal to the reference (NV={tb.nv}, DW={tb.dw})")


@pytest.mark.parametrize(
    "parameters",
    [{"NV": 81, "DW": 9}, {"NV": 6, "DW": 64}, {"NV": 1, "DW": 3}],
    ids=lambda p: f"NV{p['NV']}-DW{p['DW']}",
)
def test_fcsp_choose(parameters: dict[str, int]) -> None:
    import sim

    env = {
        "FCSP_PARAMS": json.dumps(parameters),
        "FCSP_SEED": os.environ.get("FCSP_UNIT_SEED", "1"),
        "FCSP_CASES": os.environ.get("FCSP_UNIT_CASES", "4000"),
    }
    sim.run("fcsp_choose", "test_fcsp_choose", HERE, parameters, env)
