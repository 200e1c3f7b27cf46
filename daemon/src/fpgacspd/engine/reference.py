"""Reference model of ISA v1: the definition of what the accelerator computes.

Plain Python on purpose. Every other implementation (the fast core, the RTL, a real card) is tested
against this module bit for bit: domains, status, node count, solution count and sweep count.

Schedule: synchronous sweeps, as the hardware runs them. In one sweep every propagator reads the
domains left by the previous sweep and the results are ANDed. Propagation stops after the first sweep
that changes nothing (that sweep is counted) or produces an empty domain or a propagator conflict
(counted too). Because every propagator is monotone and only narrows, the fixpoint does not depend on
the schedule; the sweep count does, and it is the cycle model.

Search (SOLVE): depth-first, binary. At a node that propagates to a fixpoint that is neither a conflict
nor a solution, branch on the unfixed variable with the fewest values (ties: lowest index) and the value
of highest priority (ties, or no priorities: lowest value); the left child fixes it, the right child
removes it; left first. ``nodes`` counts propagated nodes, the root included; a node is not started once
``nodes == node_limit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from fpgacsp_proto.isa import AllDiff, Constraint, Linear, LinearOp, Mode, Neq, Program, Status, Table2

# Defined once in the wire package, so the client's local default and bound are the engine's (and the daemon's).
from fpgacsp_proto.limits import DEFAULT_NODE_LIMIT, MAX_LIMIT


@dataclass(frozen=True)
class SolveOptions:
    mode: Mode = Mode.SOLVE
    node_limit: int = DEFAULT_NODE_LIMIT
    max_solutions: int = 1

    def __post_init__(self) -> None:
        if self.mode not in (Mode.PROPAGATE, Mode.SOLVE):
            raise ValueError(f"mode: must be PROPAGATE (1) or SOLVE (2), got {self.mode!r}")
        object.__setattr__(self, "mode", Mode(self.mode))
        for name in ("node_limit", "max_solutions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= value <= MAX_LIMIT:
                raise ValueError(f"{name}: must be an integer in [1, 2^63 - 1], got {value!r}")
            object.__setattr__(self, name, int(value))


DEFAULT_OPTIONS = SolveOptions()


@dataclass(frozen=True)
class Result:
    """Outcome for one instance.

    ``domains``: SOLVED gives the (first) solution; LIMIT the first solution when one was found before
    the limit, else the root fixpoint; FIXPOINT the fixpoint; CONFLICT and UNSAT all zeros.
    """

    domains: tuple[int, ...]
    status: Status
    nodes: int
    solutions: int
    sweeps: int


def is_singleton(d: int) -> bool:
    return d != 0 and d & (d - 1) == 0


def popcount(d: int) -> int:
    return bin(d).count("1")


# --- propagators: pure functions of their scope's domains --------------------------------------------
# Each returns (narrowed domains of the scope, conflict flag). They never widen a domain.


def alldiff(doms: Sequence[int], exact: bool, domain_size: int) -> tuple[list[int], bool]:
    fixed_once = fixed_twice = 0
    for d in doms:
        if is_singleton(d):
            fixed_twice |= fixed_once & d
            fixed_once |= d
    outs = []
    for d in doms:
        # values taken by some *other* fixed variable
        taken = fixed_once & ~d | fixed_twice if is_singleton(d) else fixed_once
        outs.append(d & ~taken)
    if not exact:
        return outs, False
    once = twice = 0
    for d in doms:
        twice |= once & d
        once |= d
    if once != (1 << domain_size) - 1:
        return outs, True  # some value has no place left
    hidden = once & ~twice
    conflict = False
    for i, d in enumerate(doms):
        h = d & hidden
        if h:
            conflict |= not is_singleton(h)  # one variable is the only place of two values
            outs[i] &= h
    return outs, conflict


def neq(dx: int, dy: int, k: int, domain_size: int) -> tuple[list[int], bool]:
    ox, oy = dx, dy
    if is_singleton(dy):
        v = dy.bit_length() - 1 + k
        if 0 <= v < domain_size:
            ox &= ~(1 << v)
    if is_singleton(dx):
        v = dx.bit_length() - 1 - k
        if 0 <= v < domain_size:
            oy &= ~(1 << v)
    return [ox, oy], False


def table2(dx: int, dy: int, rows: Sequence[int], cols: Sequence[int]) -> tuple[list[int], bool]:
    support_x = support_y = 0
    for b, col in enumerate(cols):
        if dy >> b & 1:
            support_x |= col
    for a, row in enumerate(rows):
        if dx >> a & 1:
            support_y |= row
    return [dx & support_x, dy & support_y], False


def _interval_mask(lo: int, hi: int, domain_size: int) -> int:
    lo, hi = max(lo, 0), min(hi, domain_size - 1)
    if lo > hi:
        return 0
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)


def linear(
    doms: Sequence[int], coeffs: Sequence[int], op: LinearOp, rhs: int, domain_size: int
) -> tuple[list[int], bool]:
    if any(d == 0 for d in doms):
        return list(doms), False  # the empty domain already is the conflict
    cmin, cmax = [], []
    for a, d in zip(coeffs, doms, strict=True):
        lo, hi = (d & -d).bit_length() - 1, d.bit_length() - 1
        cmin.append(a * lo if a > 0 else a * hi)
        cmax.append(a * hi if a > 0 else a * lo)
    smin, smax = sum(cmin), sum(cmax)
    outs = []
    for i, (a, d) in enumerate(zip(coeffs, doms, strict=True)):
        lo, hi = 0, domain_size - 1
        upper = rhs - (smin - cmin[i])  # a * x <= upper
        if a > 0:
            hi = min(hi, upper // a)
        else:
            lo = max(lo, -(upper // -a))  # ceil(upper / a) for a < 0
        if op == LinearOp.EQ:
            lower = rhs - (smax - cmax[i])  # a * x >= lower
            if a > 0:
                lo = max(lo, -(-lower // a))  # ceil(lower / a)
            else:
                hi = min(hi, -lower // -a)  # floor(lower / a) for a < 0
        outs.append(d & _interval_mask(lo, hi, domain_size))
    return outs, False


def apply_constraint(c: Constraint, doms: Sequence[int], domain_size: int) -> tuple[list[int], bool]:
    scope_doms = [doms[v] for v in c.scope]
    if isinstance(c, AllDiff):
        return alldiff(scope_doms, c.exact, domain_size)
    if isinstance(c, Neq):
        return neq(scope_doms[0], scope_doms[1], c.k, domain_size)
    if isinstance(c, Table2):
        return table2(scope_doms[0], scope_doms[1], c.rows, c.columns(domain_size))
    if isinstance(c, Linear):
        return linear(scope_doms, c.coeffs, c.op, c.rhs, domain_size)
    raise TypeError(f"unknown constraint {c!r}")


# --- propagation and search --------------------------------------------------------------------------


def propagate(program: Program, domains: Sequence[int]) -> tuple[tuple[int, ...] | None, int]:
    """Synchronous sweeps to the fixpoint. Returns (domains or None on conflict, sweeps)."""
    doms = list(domains)
    sweeps = 0
    while True:
        sweeps += 1
        if any(d == 0 for d in doms):
            return None, sweeps
        new = list(doms)
        conflict = False
        for c in program.constraints:
            outs, failed = apply_constraint(c, doms, program.domain_size)
            conflict |= failed
            for v, out in zip(c.scope, outs, strict=True):
                new[v] &= out
        if conflict or any(d == 0 for d in new):
            return None, sweeps
        if new == doms:
            return tuple(doms), sweeps
        doms = new


def branch_choice(doms: Sequence[int], priorities: Sequence[Sequence[int]] | None) -> tuple[int, int]:
    """(variable, value) to branch on: fewest values, then lowest index; highest priority, then lowest value."""
    var = min((i for i, d in enumerate(doms) if not is_singleton(d)), key=lambda i: (popcount(doms[i]), i))
    values = [v for v in range(doms[var].bit_length()) if doms[var] >> v & 1]
    if priorities is None:
        return var, values[0]
    return var, max(values, key=lambda v: (priorities[var][v], -v))


def solve(
    program: Program,
    domains: Sequence[int],
    priorities: Sequence[Sequence[int]] | None = None,
    options: SolveOptions = DEFAULT_OPTIONS,
) -> Result:
    """Run one instance in the given mode. ``domains`` are initial bitsets, one int per variable."""
    zeros = (0,) * program.num_vars
    if options.mode == Mode.PROPAGATE:
        fix, sweeps = propagate(program, domains)
        if fix is None:
            return Result(zeros, Status.CONFLICT, 1, 0, sweeps)
        solved = all(is_singleton(d) for d in fix)
        return Result(fix, Status.SOLVED if solved else Status.FIXPOINT, 1, int(solved), sweeps)

    nodes = solutions = sweeps = 0
    first: tuple[int, ...] | None = None
    root: tuple[int, ...] | None = None
    stack: list[tuple[int, ...]] = [tuple(domains)]
    hit_limit = False
    while stack:
        if nodes == options.node_limit:
            hit_limit = True
            break
        node = stack.pop()
        nodes += 1
        fix, s = propagate(program, node)
        sweeps += s
        if nodes == 1:
            root = fix
        if fix is None:
            continue
        if all(is_singleton(d) for d in fix):
            solutions += 1
            first = first or fix
            if solutions == options.max_solutions:
                break
            continue
        var, val = branch_choice(fix, priorities)
        right = list(fix)
        right[var] &= ~(1 << val)
        left = list(fix)
        left[var] = 1 << val
        stack.append(tuple(right))
        stack.append(tuple(left))
    if hit_limit:
        return Result(first or root or zeros, Status.LIMIT, nodes, solutions, sweeps)
    if first is not None:
        return Result(first, Status.SOLVED, nodes, solutions, sweeps)
    return Result(zeros, Status.UNSAT, nodes, 0, sweeps)
