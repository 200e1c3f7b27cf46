"""fcsp_alldiff against the reference model (engine/reference.py ``alldiff``): seeded random vectors and edge cases.

Two pipeline stages: set the inputs, take a clock edge, then give the same domains to ``doms_late`` and read the
outputs, with the first stage's inputs set to another vector by then (the outputs must be the registered record's,
not those of what the first stage sees now). The contract is the engine's: a propagator *fails* when
it raises ``conflict`` or leaves a used domain empty (the engine ends the node as a conflict in that sweep either
way, and discards the domains). When the reference does not fail, the outputs of the used positions (the first
``m``) must equal the reference's and ``conflict`` must be clear; when it fails, the unit must fail too. (Two
variables fixed to one value: the reference empties them, the unit raises its flag; see fcsp_alldiff.sv.) Positions
with ``used`` clear get random words (bits at or above D too): they must take no part. ``FCSP_UNIT_CASES`` sets the
number of random vectors per parameter set (default 4000), ``FCSP_UNIT_SEED`` the seed; a failure names the seed and
the case, whose vector is ``random.Random(f"{seed}:{case}")``.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from unit_tb import pack, reference, through_two_stages  # noqa: E402  (tb/ is on the path from the line above)


@dataclass(frozen=True)
class Vector:
    doms: list[int]  # all MS positions; the first m are the scope
    m: int
    exact: bool
    d: int  # the domain size D


class TB:
    def __init__(self, dut: Any) -> None:
        self.dut = dut
        Clock(dut.clk, 10, unit="ns").start()  # a task of its own (cocotb 2)
        p = json.loads(os.environ["FCSP_PARAMS"])
        self.ms, self.dw = p["MS"], p["DW"]
        self.other = random.Random("another vector")

    def stage1(self, v: Vector) -> None:
        dut, dw = self.dut, self.dw
        dut.doms.value = pack(v.doms, dw)
        dut.used.value = (1 << v.m) - 1
        dut.exact.value = int(v.exact)
        dut.full.value = (1 << v.d) - 1

    async def apply(self, v: Vector) -> tuple[list[int], bool]:
        scramble = random_vector(self.other, self.ms, self.dw)
        return await through_two_stages(self.dut, self.stage1, v, v.doms, scramble, self.ms, self.dw)

    async def check(self, v: Vector, name: str) -> None:
        got_outs, got_conflict = await self.apply(v)
        scope = v.doms[: v.m]
        want_outs, want_conflict = reference.alldiff(scope, v.exact, v.d)
        want_fails = want_conflict or 0 in want_outs
        got_fails = got_conflict or 0 in got_outs[: v.m]
        wrong = []
        if want_fails and not got_fails:
            wrong.append(f"the reference fails (conflict {int(want_conflict)}, outs {hexes(want_outs)}), the unit not")
        if not want_fails and got_conflict:
            wrong.append("conflict 1 where the reference has none")
        if not want_fails and got_outs[: v.m] != want_outs:
            wrong.append(f"outs {hexes(got_outs[: v.m])} != {hexes(want_outs)}")
        assert not wrong, (
            f"{name}: (rtl != reference) {'; '.join(wrong)}; D={v.d} m={v.m} exact={int(v.exact)} "
            f"doms={hexes(scope)} unused={hexes(v.doms[v.m :])}"
        )


def hexes(xs: list[int]) -> str:
    return "[" + ", ".join(hex(x) for x in xs) + "]"


def random_domain(rng: random.Random, d: int) -> int:
    roll = rng.random()
    if roll < 0.04:
        return 0
    if roll < 0.40:
        return 1 << rng.randrange(d)
    if roll < 0.50:
        return (1 << d) - 1
    x = rng.getrandbits(d)
    for _ in range(rng.randrange(3)):
        x &= rng.getrandbits(d)  # sparser
    return x


def random_vector(rng: random.Random, ms: int, dw: int) -> Vector:
    if rng.random() < 0.5:
        d = m = rng.choice([min(ms, dw), rng.randint(1, min(ms, dw))])  # exact: as many variables as values
        exact = True
        if rng.random() < 0.6:
            # around a permutation: every value has a place, some domains fixed, some wider, a few values lost
            perm = rng.sample(range(d), d)
            doms = []
            for i in range(m):
                x = 1 << perm[i]
                if rng.random() < 0.5:
                    x |= rng.getrandbits(d) & rng.getrandbits(d)
                if rng.random() < 0.08:
                    x &= ~(1 << rng.randrange(d))
                doms.append(x)
        else:
            doms = [random_domain(rng, d) for _ in range(m)]
    else:
        exact = False
        d = rng.choice([dw, rng.randint(1, dw), rng.randint(1, min(dw, 6))])
        m = rng.choice([ms, rng.randint(1, ms)])
        if rng.random() < 0.3:  # few values, so that fixed variables collide
            few = min(d, m + 1)
            doms = [1 << rng.randrange(few) if rng.random() < 0.7 else random_domain(rng, d) for _ in range(m)]
        else:
            doms = [random_domain(rng, d) for _ in range(m)]
    unused = [rng.getrandbits(dw) if rng.random() < 0.7 else 1 << rng.randrange(dw) for _ in range(ms - m)]
    return Vector(doms + unused, m, exact, d)


def edge_vectors(ms: int, dw: int) -> list[Vector]:
    out = []
    for d in sorted({1, 2, min(ms, dw), dw}):
        full = (1 << d) - 1
        for m in sorted({1, 2, ms} & set(range(1, ms + 1))):
            pad = [(1 << dw) - 1] * (ms - m)
            out.append(Vector([full] * m + pad, m, False, d))
            out.append(Vector([0] * m + pad, m, False, d))
            out.append(Vector([1 << (d - 1)] * m + pad, m, False, d))  # every one fixed to the top value
            out.append(Vector([1 << (i % d) for i in range(m)] + pad, m, False, d))
        if d <= ms:
            pad = [1] * (ms - d)  # singletons outside the scope: they must not count as fixed
            out.append(Vector([1 << (d - 1 - i) for i in range(d)] + pad, d, True, d))
            out.append(Vector([full] * d + pad, d, True, d))
            out.append(Vector([0] * d + pad, d, True, d))
            if d >= 2:
                out.append(Vector([full & ~1] * d + pad, d, True, d))  # value 0 has no place
                out.append(Vector([full] + [full & ~3] * (d - 1) + pad, d, True, d))  # 0 and 1 only at position 0
                out.append(Vector([full & ~1] * (d - 1) + [full] + pad, d, True, d))  # a hidden single, last
                out.append(Vector([1, 1] + [full] * (d - 2) + pad, d, True, d))  # two fixed at 0
                out.append(Vector([1] + [full] * (d - 1) + pad, d, True, d))
            if d >= 3:
                out.append(Vector([3, 3, 3] + [full & ~7] * (d - 3) + pad, d, True, d))  # pigeonhole, covered
    return out


@cocotb.test()
async def random_vectors_equal_the_reference(dut: Any) -> None:
    tb = TB(dut)
    seed, cases = int(os.environ["FCSP_SEED"]), int(os.environ["FCSP_CASES"])
    for n in range(cases):
        await tb.check(random_vector(random.Random(f"{seed}:{n}"), tb.ms, tb.dw), f"seed {seed} case {n}")
    dut._log.info(f"{cases} random vectors equal to the reference (MS={tb.ms}, DW={tb.dw}, seed {seed})")


@cocotb.test()
async def edge_cases_equal_the_reference(dut: Any) -> None:
    tb = TB(dut)
    vectors = edge_vectors(tb.ms, tb.dw)
    for n, v in enumerate(vectors):
        await tb.check(v, f"edge case {n}")
    dut._log.info(f"{len(vectors)} edge cases equal to the reference (MS={tb.ms}, DW={tb.dw})")


@pytest.mark.parametrize(
    "parameters",
    [{"MS": 9, "DW": 9}, {"MS": 4, "DW": 64}, {"MS": 5, "DW": 8}],
    ids=lambda p: f"MS{p['MS']}-DW{p['DW']}",
)
def test_fcsp_alldiff(parameters: dict[str, int]) -> None:
    import sim

    env = {
        "FCSP_PARAMS": json.dumps(parameters),
        "FCSP_SEED": os.environ.get("FCSP_UNIT_SEED", "1"),
        "FCSP_CASES": os.environ.get("FCSP_UNIT_CASES", "4000"),
    }
    sim.run("fcsp_alldiff", "test_fcsp_alldiff", HERE, parameters, env)
