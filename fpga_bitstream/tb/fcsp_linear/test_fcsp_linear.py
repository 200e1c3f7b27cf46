"""fcsp_linear against the reference model (engine/reference.py ``linear``): seeded random vectors and edge cases.

Combinational: set the inputs, wait 1 ns, read the outputs. The outputs of the used positions (the first ``m``) must
equal the reference's, except when some domain of the scope is empty: the reference then returns its inputs (the
empty domain is the conflict, and the engine counts it as one whatever the lane says), so nothing is compared. The
coefficients are nonzero within +-MAX_COEFF and rhs within +-MAX_RHS (the ISA's ranges), small and extreme, and rhs
is often near the scope's least or greatest sum, where the bounds cut. Positions with ``used`` clear get random
domains and coefficients (zero and -2^31 included): they must take no part. ``FCSP_UNIT_CASES`` sets the number of
random vectors per parameter set (default 4000), ``FCSP_UNIT_SEED`` the seed; a failure names the seed and the case,
whose vector is ``random.Random(f"{seed}:{case}")``.
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
from fpgacsp_proto.isa import MAX_COEFF, MAX_RHS, LinearOp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from unit_tb import reference  # noqa: E402  (tb/ is on the path from the line above)


@dataclass(frozen=True)
class Vector:
    doms: list[int]  # all MS positions; the first m are the scope
    coeffs: list[int]  # all MS positions
    m: int
    op: LinearOp
    rhs: int
    d: int  # the domain size D


class TB:
    def __init__(self, dut: Any) -> None:
        self.dut = dut
        p = json.loads(os.environ["FCSP_PARAMS"])
        self.ms, self.dw = p["MS"], p["DW"]

    async def apply(self, v: Vector) -> list[int]:
        dut, dw = self.dut, self.dw
        dut.doms.value = sum(x << (i * dw) for i, x in enumerate(v.doms))
        dut.used.value = (1 << v.m) - 1
        dut.op_eq.value = int(v.op == LinearOp.EQ)
        dut.rhs.value = v.rhs & ((1 << 64) - 1)  # two's complement
        dut.coeffs.value = sum((a & 0xFFFF_FFFF) << (32 * i) for i, a in enumerate(v.coeffs))
        await Timer(1, "ns")
        outs = int(dut.outs.value)
        mask = (1 << dw) - 1
        return [outs >> (i * dw) & mask for i in range(self.ms)]

    async def check(self, v: Vector, name: str) -> bool:
        """Compare; False when the scope has an empty domain (nothing to compare)."""
        got = (await self.apply(v))[: v.m]
        scope, coeffs = v.doms[: v.m], v.coeffs[: v.m]
        if 0 in scope:
            return False
        want, _ = reference.linear(scope, coeffs, v.op, v.rhs, v.d)
        assert got == want, (
            f"{name}: (rtl != reference) outs {hexes(got)} != {hexes(want)}; D={v.d} m={v.m} {v.op.name} "
            f"rhs={v.rhs} coeffs={coeffs} doms={hexes(scope)} unused coeffs={v.coeffs[v.m :]} "
            f"doms={hexes(v.doms[v.m :])}"
        )
        return True


def hexes(xs: list[int]) -> str:
    return "[" + ", ".join(hex(x) for x in xs) + "]"


def random_domain(rng: random.Random, d: int) -> int:
    roll = rng.random()
    if roll < 0.02:
        return 0
    if roll < 0.20:
        return 1 << rng.randrange(d)
    if roll < 0.40:
        return (1 << d) - 1
    if roll < 0.60:  # an interval
        lo = rng.randrange(d)
        hi = rng.randrange(lo, d)
        return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)
    return rng.getrandbits(d) or 1 << rng.randrange(d)


def random_coeff(rng: random.Random, extreme: float) -> int:
    if rng.random() < extreme:
        return rng.choice([MAX_COEFF, -MAX_COEFF, MAX_COEFF - 1, 1 - MAX_COEFF, 1 << 30, -(1 << 30)])
    roll = rng.random()
    if roll < 0.3:
        return rng.choice([1, -1])
    if roll < 0.8:
        return rng.choice([-1, 1]) * rng.randint(1, 7)
    return rng.choice([-1, 1]) * rng.randint(1, MAX_COEFF)


def bounds(doms: list[int], coeffs: list[int]) -> tuple[int, int]:
    """The least and greatest sum over the domains (nonempty)."""
    smin = smax = 0
    for a, d in zip(coeffs, doms, strict=True):
        lo, hi = (d & -d).bit_length() - 1, d.bit_length() - 1
        smin += min(a * lo, a * hi)
        smax += max(a * lo, a * hi)
    return smin, smax


def random_rhs(rng: random.Random, doms: list[int], coeffs: list[int]) -> int:
    if 0 in doms:
        return rng.randint(-MAX_RHS, MAX_RHS)
    smin, smax = bounds(doms, coeffs)
    step = max(abs(a) for a in coeffs)
    roll = rng.random()
    if roll < 0.35:
        rhs = rng.randint(smin, smax)
    elif roll < 0.55:
        rhs = smin + rng.randint(-2, 2) * rng.choice([1, step])
    elif roll < 0.75:
        rhs = smax + rng.randint(-2, 2) * rng.choice([1, step])
    elif roll < 0.85:
        rhs = rng.choice([0, MAX_RHS, -MAX_RHS, MAX_RHS - 1, 1 - MAX_RHS])
    else:
        span = smax - smin + 1
        rhs = rng.randint(smin - span, smax + span)
    return max(-MAX_RHS, min(MAX_RHS, rhs))


def random_vector(rng: random.Random, ms: int, dw: int) -> Vector:
    d = rng.choice([dw, rng.randint(1, dw), rng.randint(1, min(dw, 6))])
    m = rng.choice([ms, rng.randint(1, ms), rng.randint(1, min(ms, 3))])
    extreme = rng.choice([0.0, 0.0, 0.2, 1.0])
    doms = [random_domain(rng, d) for _ in range(m)]
    coeffs = [random_coeff(rng, extreme) for _ in range(m)]
    rhs = random_rhs(rng, doms, coeffs)
    op = rng.choice([LinearOp.LE, LinearOp.EQ])
    unused_doms = [rng.getrandbits(dw) for _ in range(ms - m)]
    unused_coeffs = [rng.choice([0, -(1 << 31), MAX_COEFF, rng.getrandbits(32) - (1 << 31)]) for _ in range(ms - m)]
    return Vector(doms + unused_doms, coeffs + unused_coeffs, m, op, rhs, d)


def edge_vectors(ms: int, dw: int) -> list[Vector]:
    out = []
    for d in sorted({1, 2, dw}):
        full = (1 << d) - 1
        top = 1 << (d - 1)
        for op in (LinearOp.LE, LinearOp.EQ):
            # one variable, every rhs around the domain: a * x <= / == rhs
            for a in (1, -1, 2, -3, MAX_COEFF, -MAX_COEFF):
                for v in sorted({-1, 0, 1, d - 2, d - 1, d}):
                    for rhs in (a * v - 1, a * v, a * v + 1):
                        pad = ms - 1
                        out.append(Vector([full] + [full] * pad, [a] + [-(1 << 31)] * pad, 1, op, rhs, d))
            # the whole scope at the extremes: every coefficient +-MAX_COEFF, rhs +-MAX_RHS and the sums' ends
            for sign in (1, -1, 0):
                coeffs = [MAX_COEFF if sign > 0 or (sign == 0 and i % 2) else -MAX_COEFF for i in range(ms)]
                for doms in ([full] * ms, [top] * ms, [1] * ms, [full, top] * (ms // 2) + [full] * (ms % 2)):
                    smin, smax = bounds(doms, coeffs)
                    for rhs in (MAX_RHS, -MAX_RHS, 0, smin, smin - 1, smax, smax + 1, (smin + smax) // 2):
                        out.append(Vector(doms, coeffs, ms, op, rhs, d))
    return out


@cocotb.test()
async def random_vectors_equal_the_reference(dut: Any) -> None:
    tb = TB(dut)
    seed, cases = int(os.environ["FCSP_SEED"]), int(os.environ["FCSP_CASES"])
    compared = 0
    for n in range(cases):
        compared += await tb.check(random_vector(random.Random(f"{seed}:{n}"), tb.ms, tb.dw), f"seed {seed} case {n}")
    assert compared > cases // 2, f"only {compared} of {cases} vectors had no empty domain"
    dut._log.info(f"{compared} of {cases} random vectors compared, equal to the reference (MS={tb.ms}, DW={tb.dw})")


@cocotb.test()
async def edge_cases_equal_the_reference(dut: Any) -> None:
    tb = TB(dut)
    vectors = edge_vectors(tb.ms, tb.dw)
    for n, v in enumerate(vectors):
        await tb.check(v, f"edge case {n}")
    dut._log.info(f"{len(vectors)} edge cases equal to the reference (MS={tb.ms}, DW={tb.dw})")


@pytest.mark.parametrize(
    "parameters", [{"MS": 5, "DW": 8}, {"MS": 16, "DW": 64}], ids=lambda p: f"MS{p['MS']}-DW{p['DW']}"
)
def test_fcsp_linear(parameters: dict[str, int]) -> None:
    import sim

    env = {
        "FCSP_PARAMS": json.dumps(parameters),
        "FCSP_SEED": os.environ.get("FCSP_UNIT_SEED", "1"),
        "FCSP_CASES": os.environ.get("FCSP_UNIT_CASES", "4000"),
    }
    sim.run("fcsp_linear", "test_fcsp_linear", HERE, parameters, env)
