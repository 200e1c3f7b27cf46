"""fcsp_lane: the kind select routes each unit (a smoke test; the units have their own testbenches).

Each vector draws a kind (0: none, 1 ALLDIFF, 2 NEQ, 3 TABLE2, 4 LINEAR, and 5..7, which no record carries) and
fills every field of the record, the other kinds' too, with random values: the outputs must be the reference's for
that kind (engine/reference.py), and pass the other positions through. ALLDIFF compares the used positions and
``conflict`` when the reference does not fail, and otherwise that the lane fails too (a conflict or an empty used
domain, as in test_fcsp_alldiff); NEQ and TABLE2 positions 0 (x) and 1 (y), and every other position unchanged;
LINEAR the used positions when none is empty (as in test_fcsp_linear); no kind, or an unknown one, every position
unchanged. ``conflict`` is 0 for all kinds but ALLDIFF. A kind the lane is built without (``KINDS``) passes
everything through, except on a lane built with one kind (the 9x9 engine's ALLDIFF lanes), which does not select:
for any other kind only ``conflict`` (0) is compared. ``FCSP_UNIT_LANE_CASES`` sets the number of random vectors per
parameter set (default 1000), ``FCSP_UNIT_SEED`` the seed; a failure names the seed and the case, whose vector is
``random.Random(f"{seed}:{case}")``.

The lane is two pipeline stages: each vector is given, a clock edge taken, and the outputs read with the same domains
on ``doms_late`` and another random record on the first stage's inputs (the outputs must be the registered record's).
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
from fpgacsp_proto.isa import MAX_COEFF, MAX_RHS, LinearOp, Table2

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from unit_tb import pack, reference, through_two_stages  # noqa: E402  (tb/ is on the path from the line above)

ALLDIFF, NEQ, TABLE2, LINEAR = 1, 2, 3, 4


@dataclass(frozen=True)
class Vector:
    kind: int
    flag: bool  # ALLDIFF exact / LINEAR op EQ
    m: int  # used: the first m positions
    d: int  # the domain size D
    doms: list[int]  # MS positions
    k: int
    rhs: int
    coeffs: list[int]  # MS positions
    rows: list[int]  # D rows


class TB:
    def __init__(self, dut: Any) -> None:
        self.dut = dut
        Clock(dut.clk, 10, unit="ns").start()  # a task of its own (cocotb 2)
        p = json.loads(os.environ["FCSP_PARAMS"])
        self.ms, self.dw, self.kinds = p["MS"], p["DW"], p["KINDS"]
        self.other = random.Random("another record")

    async def apply(self, v: Vector) -> tuple[list[int], bool]:
        scramble = random_vector(self.other, self.ms, self.dw)
        return await through_two_stages(self.dut, self.stage1, v, v.doms, scramble, self.ms, self.dw)

    def stage1(self, v: Vector) -> None:
        dut, dw = self.dut, self.dw
        dut.kind.value = v.kind
        dut.flag.value = int(v.flag)
        dut.used.value = (1 << v.m) - 1
        dut.full.value = (1 << v.d) - 1
        dut.doms.value = pack(v.doms, dw)
        dut.k.value = v.k & 0xFFFF_FFFF
        dut.rhs.value = v.rhs & ((1 << 64) - 1)
        dut.coeffs.value = sum((a & 0xFFFF_FFFF) << (32 * i) for i, a in enumerate(v.coeffs))
        dut.rows.value = sum(row << (a * dw) for a, row in enumerate(v.rows))

    def expected(self, v: Vector) -> tuple[list[int | None], bool | None]:
        """The outputs (None: not compared) and the conflict flag (None: the lane must fail, as the reference does:
        a conflict or an empty used domain)."""
        want: list[int | None] = list(v.doms)
        built = 1 <= v.kind <= 4 and self.kinds >> (v.kind - 1) & 1
        if not built:
            if self.kinds & (self.kinds - 1) == 0:  # one kind built: its unit's outputs, never read for other kinds
                return [None] * self.ms, False
            return want, False
        scope = v.doms[: v.m]
        if v.kind == ALLDIFF:
            outs, conflict = reference.alldiff(scope, v.flag, v.d)
            if conflict or 0 in outs:
                return [None] * self.ms, None
            return [*outs, *[None] * (self.ms - v.m)], False
        if v.kind == NEQ:
            want[:2], _ = reference.neq(v.doms[0], v.doms[1], v.k, v.d)
        elif v.kind == TABLE2:
            want[:2], _ = reference.table2(v.doms[0], v.doms[1], v.rows, Table2(0, 1, tuple(v.rows)).columns(v.d))
        else:
            op = LinearOp.EQ if v.flag else LinearOp.LE
            outs, _ = reference.linear(scope, v.coeffs[: v.m], op, v.rhs, v.d)
            want = [None] * self.ms if 0 in scope else [*outs, *[None] * (self.ms - v.m)]
        return want, False

    async def check(self, v: Vector, name: str) -> None:
        got, got_conflict = await self.apply(v)
        want, want_conflict = self.expected(v)
        wrong = [
            f"position {i}: {g:#x} != {w:#x}"
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            if w not in (None, g)
        ]
        if want_conflict is None:
            if not got_conflict and 0 not in got[: v.m]:
                wrong.append("the reference fails (a conflict or an empty domain), the lane does not")
        elif got_conflict != want_conflict:
            wrong.append(f"conflict {int(got_conflict)} != {int(want_conflict)}")
        assert not wrong, f"{name}: (rtl != reference) {'; '.join(wrong)}; KINDS={self.kinds} {v}"


def random_domain(rng: random.Random, d: int) -> int:
    roll = rng.random()
    if roll < 0.03:
        return 0
    if roll < 0.45:
        return 1 << rng.randrange(d)
    if roll < 0.60:
        return (1 << d) - 1
    return rng.getrandbits(d)


def random_vector(rng: random.Random, ms: int, dw: int) -> Vector:
    kind = rng.choice([0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 7])
    flag = rng.random() < 0.5
    if kind == ALLDIFF and flag:
        d = m = rng.randint(1, min(ms, dw))  # exact: as many variables as values
    else:
        d = rng.choice([dw, rng.randint(1, dw)])
        m = rng.randint(2 if kind in (NEQ, TABLE2) else 1, ms) if ms >= 2 else 1
    doms = [random_domain(rng, d) for _ in range(ms)]
    k = rng.choice([0, 1, -1, rng.randint(-d, d), MAX_COEFF, -MAX_COEFF])
    coeffs = [rng.choice([1, -1, rng.randint(-5, 5) or 2, MAX_COEFF, -MAX_COEFF]) for _ in range(ms)]
    span = sum(abs(a) for a in coeffs[:m]) * (d - 1)
    rhs = rng.choice([rng.randint(-span, span), 0, MAX_RHS, -MAX_RHS])
    rows = [rng.getrandbits(d) & rng.getrandbits(d) for _ in range(d)]
    return Vector(kind, flag, m, d, doms, k, rhs, coeffs, rows)


@cocotb.test()
async def each_kind_routes_its_unit(dut: Any) -> None:
    tb = TB(dut)
    seed, cases = int(os.environ["FCSP_SEED"]), int(os.environ["FCSP_CASES"])
    for n in range(cases):
        await tb.check(random_vector(random.Random(f"{seed}:{n}"), tb.ms, tb.dw), f"seed {seed} case {n}")
    dut._log.info(f"{cases} random records routed as the reference says (MS={tb.ms}, DW={tb.dw}, KINDS={tb.kinds})")


@cocotb.test()
async def one_record_of_each_kind(dut: Any) -> None:
    """The same domains through every kind: x = 1 fixed, y = {1, 2}: each unit narrows them in its own way."""
    tb = TB(dut)
    assert tb.dw >= 4 and tb.ms >= 4, "needs four values and four positions"
    d, ms = 4, tb.ms
    doms = [0b0010, 0b0110] + [(1 << d) - 1] * (ms - 2)
    rows = [0b0000, 0b0100, 0b0000, 0b0000]  # only (x=1, y=2)
    for kind in range(8):
        for flag in (False, True):
            m = d if kind == ALLDIFF and flag else ms
            # LINEAR: x + y <= 2 (or == 2) leaves y = 1 when x = 1
            v = Vector(kind, flag, m, d, doms, 0, 2, [1] * ms, rows)
            await tb.check(v, f"kind {kind} flag {int(flag)}")


@pytest.mark.parametrize(
    "parameters",
    [{"MS": 5, "DW": 8, "KINDS": 15}, {"MS": 4, "DW": 8, "KINDS": 10}, {"MS": 9, "DW": 9, "KINDS": 1}],
    ids=lambda p: f"MS{p['MS']}-DW{p['DW']}-KINDS{p['KINDS']}",
)
def test_fcsp_lane(parameters: dict[str, int]) -> None:
    import sim

    env = {
        "FCSP_PARAMS": json.dumps(parameters),
        "FCSP_SEED": os.environ.get("FCSP_UNIT_SEED", "1"),
        "FCSP_CASES": os.environ.get("FCSP_UNIT_LANE_CASES", "1000"),
    }
    sim.run("fcsp_lane", "test_fcsp_lane", HERE, parameters, env)
