"""numba kernels of the fast core. Semantics are those of ``reference.py``; read that first.

The schedule is the hardware's synchronous sweep, so the sweep count (the cycle model) matches the
reference exactly. Work per sweep is cut by evaluating only the propagators whose scope changed in the
previous sweep (at a child node: those on the branched variable): a propagator whose inputs did not
change returns what it returned before, which is already in the domains, so skipping it changes neither
the result nor the sweep count.

All bit arithmetic stays in uint64: numba turns mixed uint64/int64 arithmetic into float64.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

ALLDIFF, NEQ, TABLE2, LINEAR = 1, 2, 3, 4
SOLVED, FIXPOINT, CONFLICT, UNSAT, LIMIT = 1, 2, 3, 4, 5
MODE_PROPAGATE = 1

U0 = np.uint64(0)
U1 = np.uint64(1)
ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
CONFLICTED = -1


@intrinsic
def popcount(typingctx, x):
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def ctz(typingctx, x):
    """Index of the lowest set bit; x must be nonzero."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return sig, codegen


@intrinsic
def clz(typingctx, x):
    """Number of leading zero bits; x must be nonzero."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 1))

    return sig, codegen


@njit(inline="always")
def bit(v):
    return U1 << np.uint64(v)


@njit(inline="always")
def is_single(d):
    return d != U0 and (d & (d - U1)) == U0


@njit(inline="always")
def low_index(d):
    return np.int64(ctz(d))


@njit(inline="always")
def high_index(d):
    return np.int64(63) - np.int64(clz(d))


@njit(inline="always")
def narrow(v, out, tag, cur, nxt, vstamp, cause, stamp, changed, n_changed):
    """AND ``out`` (which removes a value of ``cur[v]``) into the next-sweep domain of v.

    ``nxt[v]`` is valid only when ``vstamp[v] == stamp``; the first narrowing of a sweep starts it from
    ``cur[v]`` and records v, so nothing is copied for variables that do not change. ``tag`` is the
    constraint when its narrowing cannot feed back into itself unless v becomes fixed (see propagate),
    else -1; ``cause[v]`` keeps it only when that constraint was the sole one to narrow v this sweep.
    """
    if vstamp[v] == stamp:
        nxt[v] &= out
        cause[v] = -1
    else:
        vstamp[v] = stamp
        nxt[v] = cur[v] & out
        cause[v] = tag
        changed[n_changed] = v
        n_changed += 1
    return n_changed


@njit(inline="always")
def alldiff(c, start, scope, flag, full, cur, nxt, vstamp, cause, stamp, changed, n_changed):
    # Branch-free: ``single`` is an all-ones mask when d is a singleton, zero otherwise.
    s, e = start[c], start[c + 1]
    fixed_once = U0
    fixed_twice = U0
    once = U0
    twice = U0
    unfixed = U0
    for j in range(s, e):
        d = cur[scope[j]]
        single = U0 - np.uint64((d & (d - U1)) == U0)
        fd = d & single
        fixed_twice |= fixed_once & fd
        fixed_once |= fd
        unfixed |= d & ~single
        twice |= once & d
        once |= d
    if fixed_twice != U0:
        return CONFLICTED  # two fixed variables share a value: this sweep empties one of them
    hidden = U0
    if flag[c] != 0:
        if once != full:
            return CONFLICTED
        hidden = once & ~twice
    if unfixed & (fixed_once | hidden) == U0:
        return n_changed  # no unfixed variable holds a taken or a hidden value: nothing to narrow
    bad = U0
    for j in range(s, e):
        v = scope[j]
        d = cur[v]
        single = U0 - np.uint64((d & (d - U1)) == U0)
        out = d & ~(fixed_once & ~single)  # a fixed variable keeps its value (no duplicates, checked above)
        h = d & hidden
        bad |= h & (h - U1)  # one variable is the only place of two values
        out &= h | (U0 - np.uint64(h == U0))
        if out != d:
            tag = c if h == U0 else -1
            n_changed = narrow(v, out, tag, cur, nxt, vstamp, cause, stamp, changed, n_changed)
    if bad != U0:
        return CONFLICTED
    return n_changed


@njit(inline="always")
def neq(c, start, scope, param, dsize, cur, nxt, vstamp, cause, stamp, changed, n_changed):
    x = scope[start[c]]
    y = scope[start[c] + 1]
    k = param[c]
    dx = cur[x]
    dy = cur[y]
    if is_single(dy):
        v = low_index(dy) + k
        if 0 <= v < dsize and (dx & bit(v)) != U0:
            n_changed = narrow(x, dx & ~bit(v), c, cur, nxt, vstamp, cause, stamp, changed, n_changed)
    if is_single(dx):
        v = low_index(dx) - k
        if 0 <= v < dsize and (dy & bit(v)) != U0:
            n_changed = narrow(y, dy & ~bit(v), c, cur, nxt, vstamp, cause, stamp, changed, n_changed)
    return n_changed


@njit(inline="always")
def table2(c, start, scope, table, table_start, dsize, cur, nxt, vstamp, cause, stamp, changed, n_changed):
    x = scope[start[c]]
    y = scope[start[c] + 1]
    t = table_start[c]
    dx = cur[x]
    dy = cur[y]
    support_x = U0
    m = dy
    while m != U0:
        support_x |= table[t + dsize + low_index(m)]
        m &= m - U1
    support_y = U0
    m = dx
    while m != U0:
        support_y |= table[t + low_index(m)]
        m &= m - U1
    if dx & support_x != dx:
        n_changed = narrow(x, dx & support_x, -1, cur, nxt, vstamp, cause, stamp, changed, n_changed)
    if dy & support_y != dy:
        n_changed = narrow(y, dy & support_y, -1, cur, nxt, vstamp, cause, stamp, changed, n_changed)
    return n_changed


@njit(inline="always")
def interval_mask(lo, hi, dsize):
    if lo < 0:
        lo = 0
    if hi > dsize - 1:
        hi = dsize - 1
    if lo > hi:
        return U0
    upper = ALL_ONES if hi == 63 else (bit(hi + 1) - U1)
    return upper & ~(bit(lo) - U1)


@njit(inline="always")
def linear(c, start, scope, coeff, flag, param, dsize, cur, nxt, vstamp, cause, stamp, changed, n_changed):
    s, e = start[c], start[c + 1]
    smin = np.int64(0)
    smax = np.int64(0)
    for j in range(s, e):
        d = cur[scope[j]]
        if d == U0:
            return n_changed  # the empty domain already is the conflict
        a = coeff[j]
        lo = low_index(d)
        hi = high_index(d)
        if a > 0:
            smin += a * lo
            smax += a * hi
        else:
            smin += a * hi
            smax += a * lo
    rhs = param[c]
    is_eq = flag[c] != 0
    for j in range(s, e):
        v = scope[j]
        d = cur[v]
        a = coeff[j]
        dlo = low_index(d)
        dhi = high_index(d)
        cmin = a * dlo if a > 0 else a * dhi
        cmax = a * dhi if a > 0 else a * dlo
        lo = np.int64(0)
        hi = np.int64(dsize - 1)
        upper = rhs - (smin - cmin)
        if a > 0:
            hi = min(hi, upper // a)
        else:
            lo = max(lo, -(upper // -a))
        if is_eq:
            lower = rhs - (smax - cmax)
            if a > 0:
                lo = max(lo, -(-lower // a))
            else:
                hi = min(hi, -lower // -a)
        out = d & interval_mask(lo, hi, dsize)
        if out != d:
            n_changed = narrow(v, out, -1, cur, nxt, vstamp, cause, stamp, changed, n_changed)
    return n_changed


@njit(cache=True, nogil=True)
def propagate(
    p_kind,
    p_start,
    p_scope,
    p_coeff,
    p_flag,
    p_param,
    p_table,
    p_tstart,
    p_vstart,
    p_vcons,
    dsize,
    cur,
    nxt,
    vstamp,
    cause,
    cstamp,
    dirty,
    changed,
    counter,
    start_var,
):
    """Synchronous sweeps on ``cur`` in place. start_var < 0: all propagators dirty (root).

    Returns the sweep count, negated when the node is a conflict. A changed variable wakes the
    constraints on it for the next sweep, except the one that was the sole cause of a change that cannot
    feed back (a removal by ALLDIFF's or NEQ's fixed-value rule that left the variable unfixed): that
    constraint would return what it just returned.
    """
    nvars = cur.shape[0]
    full = ALL_ONES if dsize == 64 else bit(dsize) - U1
    n_dirty = 0
    if start_var < 0:
        for v in range(nvars):
            if cur[v] == U0:
                return -1
        for c in range(p_kind.shape[0]):
            dirty[n_dirty] = c
            n_dirty += 1
    else:
        for j in range(p_vstart[start_var], p_vstart[start_var + 1]):
            dirty[n_dirty] = p_vcons[j]
            n_dirty += 1
    sweeps = 0
    while True:
        sweeps += 1
        counter[0] += 1
        stamp = counter[0]
        n_changed = 0
        for i in range(n_dirty):
            c = dirty[i]
            k = p_kind[c]
            if k == ALLDIFF:
                n_changed = alldiff(
                    c, p_start, p_scope, p_flag, full, cur, nxt, vstamp, cause, stamp, changed, n_changed
                )
            elif k == NEQ:
                n_changed = neq(c, p_start, p_scope, p_param, dsize, cur, nxt, vstamp, cause, stamp, changed, n_changed)
            elif k == TABLE2:
                n_changed = table2(
                    c, p_start, p_scope, p_table, p_tstart, dsize, cur, nxt, vstamp, cause, stamp, changed, n_changed
                )
            else:
                n_changed = linear(
                    c,
                    p_start,
                    p_scope,
                    p_coeff,
                    p_flag,
                    p_param,
                    dsize,
                    cur,
                    nxt,
                    vstamp,
                    cause,
                    stamp,
                    changed,
                    n_changed,
                )
            if n_changed == CONFLICTED:
                return -sweeps
        if n_changed == 0:
            return sweeps
        counter[0] += 1
        cstamp_now = counter[0]
        n_dirty = 0
        for i in range(n_changed):
            v = changed[i]
            d = nxt[v]
            cur[v] = d
            if d == U0:
                return -sweeps
            quiet = cause[v] if d & (d - U1) != U0 else -1
            for j in range(p_vstart[v], p_vstart[v + 1]):
                c = p_vcons[j]
                if cstamp[c] != cstamp_now and c != quiet:
                    cstamp[c] = cstamp_now
                    dirty[n_dirty] = c
                    n_dirty += 1


@njit(inline="always")
def copy_words(dst, src):
    """Plain loop: numba's slice assignment goes through generic broadcasting and costs far more."""
    for i in range(src.shape[0]):
        dst[i] = src[i]


@njit(inline="always")
def branch_var(cur):
    """Unfixed variable with fewest values, lowest index on ties; -1 when all are fixed."""
    best = -1
    best_count = np.uint64(65)
    for v in range(cur.shape[0]):
        d = cur[v]
        if d & (d - U1) != U0:
            pc = popcount(d)
            if pc < best_count:
                best_count = pc
                best = v
                if pc == np.uint64(2):
                    break
    return best


@njit(inline="always")
def branch_value(d, prio, has_prio, var):
    """Value of highest priority, lowest value on ties."""
    if not has_prio:
        return low_index(d)
    best_v = -1
    best_p = -1
    m = d
    while m != U0:
        v = low_index(m)
        p = np.int64(prio[var, v])
        if p > best_p:
            best_p = p
            best_v = v
        m &= m - U1
    return best_v


@njit(cache=True, nogil=True)
def solve_range(
    p_kind,
    p_start,
    p_scope,
    p_coeff,
    p_flag,
    p_param,
    p_table,
    p_tstart,
    p_vstart,
    p_vcons,
    dsize,
    domains,
    prios,
    has_prio,
    mode,
    node_limit,
    max_solutions,
    first,
    step,
    out_domains,
    out_status,
    out_nodes,
    out_solutions,
    out_sweeps,
):
    """Solve instances ``first, first + step, ...`` of a batch. Scratch is allocated once per call."""
    nvars = domains.shape[1]
    ncons = p_kind.shape[0]
    cur = np.empty(nvars, dtype=np.uint64)
    nxt = np.empty(nvars, dtype=np.uint64)
    root = np.empty(nvars, dtype=np.uint64)
    vstamp = np.zeros(nvars, dtype=np.int64)
    cause = np.zeros(nvars, dtype=np.int64)
    cstamp = np.zeros(ncons, dtype=np.int64)
    dirty = np.empty(max(ncons, 1), dtype=np.int64)
    changed = np.empty(nvars, dtype=np.int64)
    counter = np.zeros(1, dtype=np.int64)
    cap = 64
    stack = np.empty((cap, nvars), dtype=np.uint64)
    stack_var = np.empty(cap, dtype=np.int64)
    for b in range(first, domains.shape[0], step):
        prio = prios[b if has_prio else 0]
        out = out_domains[b]
        for v in range(nvars):
            cur[v] = domains[b, v]
        if mode == MODE_PROPAGATE:
            sw = propagate(
                p_kind,
                p_start,
                p_scope,
                p_coeff,
                p_flag,
                p_param,
                p_table,
                p_tstart,
                p_vstart,
                p_vcons,
                dsize,
                cur,
                nxt,
                vstamp,
                cause,
                cstamp,
                dirty,
                changed,
                counter,
                -1,
            )
            out_nodes[b] = 1
            out_sweeps[b] = abs(sw)
            if sw < 0:
                out[:] = U0
                out_status[b] = CONFLICT
                out_solutions[b] = 0
            else:
                out[:] = cur
                solved = branch_var(cur) < 0
                out_status[b] = SOLVED if solved else FIXPOINT
                out_solutions[b] = 1 if solved else 0
            continue

        nodes = 0
        solutions = 0
        sweeps = 0
        top = 0
        start_var = -1
        have_first = False
        have_root = False
        hit_limit = False
        while True:
            if nodes == node_limit:
                hit_limit = True
                break
            nodes += 1
            sw = propagate(
                p_kind,
                p_start,
                p_scope,
                p_coeff,
                p_flag,
                p_param,
                p_table,
                p_tstart,
                p_vstart,
                p_vcons,
                dsize,
                cur,
                nxt,
                vstamp,
                cause,
                cstamp,
                dirty,
                changed,
                counter,
                start_var,
            )
            sweeps += abs(sw)
            if sw > 0:
                if nodes == 1:
                    copy_words(root, cur)
                    have_root = True
                var = branch_var(cur)
                if var < 0:
                    solutions += 1
                    if not have_first:
                        copy_words(out, cur)
                        have_first = True
                    if solutions == max_solutions:
                        break
                else:
                    val = branch_value(cur[var], prio, has_prio, var)
                    if top == cap:
                        cap *= 2
                        grown = np.empty((cap, nvars), dtype=np.uint64)
                        grown[:top] = stack[:top]
                        stack = grown
                        grown_var = np.empty(cap, dtype=np.int64)
                        grown_var[:top] = stack_var[:top]
                        stack_var = grown_var
                    copy_words(stack[top], cur)
                    stack[top, var] = cur[var] & ~bit(val)
                    stack_var[top] = var
                    top += 1
                    cur[var] = bit(val)
                    start_var = var
                    continue
            if top == 0:
                break
            top -= 1
            copy_words(cur, stack[top])
            start_var = stack_var[top]
        out_nodes[b] = nodes
        out_sweeps[b] = sweeps
        out_solutions[b] = solutions
        if hit_limit:
            out_status[b] = LIMIT
            if not have_first:
                if have_root:
                    out[:] = root
                else:
                    out[:] = U0
        elif have_first:
            out_status[b] = SOLVED
        else:
            out_status[b] = UNSAT
            out[:] = U0
