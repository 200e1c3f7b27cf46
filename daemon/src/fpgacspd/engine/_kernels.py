"""numba kernels of the fast core. Semantics are those of ``reference.py``; read that first.

The schedule is the hardware's synchronous sweep, so the sweep count (the cycle model) matches the
reference exactly. Work per sweep is cut by evaluating only the propagators that a change of the last
sweep can affect (``wake``). A propagator that is not woken would return exactly what it returned at
its last evaluation, which is already in the domains, so skipping it changes neither the result nor the
sweep count. The wake rules (events, in CP-solver terms):

- ALLDIFF: a variable of the scope became fixed; for an exact ALLDIFF also a value removed from a
  variable now has at most one place left in the scope (per-value holder counts, kept incrementally);
- NEQ: a variable became fixed (the propagator reads nothing else);
- LINEAR: a variable's smallest or largest value changed (it reads only bounds);
- TABLE2: any change.

The root wakes everything. tests/test_fast_core.py checks all of this bit for bit against the reference.
All bit arithmetic stays in uint64: numba turns mixed uint64/int64 arithmetic into float64. Arrays are
passed one by one, not in tuples: taking an array out of a tuple costs an atomic reference-count update,
which in the inner loops made the whole core a third slower.
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
def copy_words(dst, src):
    """Plain loop: numba's slice assignment goes through generic broadcasting and costs far more."""
    for i in range(src.shape[0]):
        dst[i] = src[i]


# Signatures below list every array they touch, in a fixed order; kept compact by hand.
# fmt: off

# --- propagators ----------------------------------------------------------------------------------------
# Each reads ``cur`` (the domains of the previous sweep) and ANDs its outputs into the next-sweep domains
# through ``narrow``; it returns the new count of changed variables, or CONFLICTED.


@njit(inline="always")
def narrow(v, out, cur, nxt, vstamp, stamp, changed, n_changed):
    """AND ``out`` (which removes a value of ``cur[v]``) into the next-sweep domain of v.

    ``nxt[v]`` is valid only when ``vstamp[v] == stamp``: the first narrowing of a sweep starts it from
    ``cur[v]`` and records v, so nothing is copied for variables that do not change.
    """
    if vstamp[v] == stamp:
        nxt[v] &= out
    else:
        vstamp[v] = stamp
        nxt[v] = cur[v] & out
        changed[n_changed] = v
        n_changed += 1
    return n_changed


@njit(inline="always")
def alldiff(c, start, scope, flag, full, cur, nxt, vstamp, stamp, changed, n_changed):
    # ``single`` is an all-ones mask when d is a singleton, zero otherwise (branch-free).
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
            return CONFLICTED  # some value has no place left
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
            n_changed = narrow(v, out, cur, nxt, vstamp, stamp, changed, n_changed)
    if bad != U0:
        return CONFLICTED
    return n_changed


@njit(inline="always")
def neq(c, start, scope, param, dsize, cur, nxt, vstamp, stamp, changed, n_changed):
    x = scope[start[c]]
    y = scope[start[c] + 1]
    k = param[c]
    dx = cur[x]
    dy = cur[y]
    if is_single(dy):
        v = low_index(dy) + k
        if 0 <= v < dsize and (dx & bit(v)) != U0:
            n_changed = narrow(x, dx & ~bit(v), cur, nxt, vstamp, stamp, changed, n_changed)
    if is_single(dx):
        v = low_index(dx) - k
        if 0 <= v < dsize and (dy & bit(v)) != U0:
            n_changed = narrow(y, dy & ~bit(v), cur, nxt, vstamp, stamp, changed, n_changed)
    return n_changed


@njit(inline="always")
def table2(c, start, scope, table, tstart, dsize, cur, nxt, vstamp, stamp, changed, n_changed):
    x = scope[start[c]]
    y = scope[start[c] + 1]
    t = tstart[c]
    dx = cur[x]
    dy = cur[y]
    support_x = U0
    m = dy
    while m != U0:
        support_x |= table[t + dsize + low_index(m)]  # columns follow the D rows
        m &= m - U1
    support_y = U0
    m = dx
    while m != U0:
        support_y |= table[t + low_index(m)]
        m &= m - U1
    if dx & support_x != dx:
        n_changed = narrow(x, dx & support_x, cur, nxt, vstamp, stamp, changed, n_changed)
    if dy & support_y != dy:
        n_changed = narrow(y, dy & support_y, cur, nxt, vstamp, stamp, changed, n_changed)
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
def linear(c, start, scope, coeff, flag, param, dsize, cur, nxt, vstamp, stamp, changed, n_changed):
    s, e = start[c], start[c + 1]
    smin = np.int64(0)
    smax = np.int64(0)
    for j in range(s, e):
        d = cur[scope[j]]
        if d == U0:
            return n_changed  # the empty domain already is the conflict
        a = coeff[j]
        if a > 0:
            smin += a * low_index(d)
            smax += a * high_index(d)
        else:
            smin += a * high_index(d)
            smax += a * low_index(d)
    rhs = param[c]
    is_eq = flag[c] != 0
    for j in range(s, e):
        v = scope[j]
        d = cur[v]
        a = coeff[j]
        cmin = a * low_index(d) if a > 0 else a * high_index(d)
        cmax = a * high_index(d) if a > 0 else a * low_index(d)
        lo = np.int64(0)
        hi = np.int64(dsize - 1)
        upper = rhs - (smin - cmin)  # a * x <= upper
        if a > 0:
            hi = min(hi, upper // a)
        else:
            lo = max(lo, -(upper // -a))
        if is_eq:
            lower = rhs - (smax - cmax)  # a * x >= lower
            if a > 0:
                lo = max(lo, -(-lower // a))
            else:
                hi = min(hi, -lower // -a)
        out = d & interval_mask(lo, hi, dsize)
        if out != d:
            n_changed = narrow(v, out, cur, nxt, vstamp, stamp, changed, n_changed)
    return n_changed


# --- waking and propagation -----------------------------------------------------------------------------


@njit(inline="always")
def wake(v, old, new, kind, vstart, vcons, count_row, dsize, counts, cstamp, stamp, dirty, n_dirty):
    """Apply the wake rules to the change ``old -> new`` (new nonempty) of v; keep holder counts current."""
    removed = old & ~new
    fixed = (new & (new - U1)) == U0
    bounds = low_index(old) != low_index(new) or high_index(old) != high_index(new)
    for j in range(vstart[v], vstart[v + 1]):
        c = vcons[j]
        k = kind[c]
        if k == ALLDIFF:
            woken = fixed
            row = count_row[c]
            if row >= 0:
                base = row * dsize
                m = removed
                while m != U0:
                    a = base + low_index(m)
                    counts[a] -= np.uint8(1)
                    woken |= counts[a] <= np.uint8(1)
                    m &= m - U1
        elif k == NEQ:
            woken = fixed
        elif k == LINEAR:
            woken = bounds
        else:
            woken = True
        if woken and cstamp[c] != stamp:
            cstamp[c] = stamp
            dirty[n_dirty] = c
            n_dirty += 1
    return n_dirty


@njit(inline="always")
def wake_all(kind, start, scope, count_row, dsize, cur, counts, dirty):
    """Root of an instance: holder counts from scratch, every propagator woken; -1 when a domain is empty."""
    counts[:] = 0
    for c in range(kind.shape[0]):
        row = count_row[c]
        if row >= 0:
            for j in range(start[c], start[c + 1]):
                m = cur[scope[j]]
                while m != U0:
                    counts[row * dsize + low_index(m)] += np.uint8(1)
                    m &= m - U1
    for v in range(cur.shape[0]):
        if cur[v] == U0:
            return -1
    for c in range(kind.shape[0]):
        dirty[c] = c
    return kind.shape[0]


@njit(inline="always")
def propagate(kind, start, scope, coeff, flag, param, table, tstart, vstart, vcons, count_row, dsize,
              cur, counts, nxt, vstamp, cstamp, dirty, n_dirty, changed, counter):
    """Synchronous sweeps on ``cur`` and ``counts`` in place, from the woken ``dirty[:n_dirty]``.

    Returns the sweep count, negated when the node is a conflict (an empty input counts one sweep).
    """
    if n_dirty < 0:
        return -1
    full = ALL_ONES if dsize == 64 else bit(dsize) - U1
    sweeps = 0
    while True:
        sweeps += 1
        counter[0] += 1
        stamp = counter[0]
        n_changed = 0
        for i in range(n_dirty):
            c = dirty[i]
            k = kind[c]
            if k == ALLDIFF:
                n_changed = alldiff(c, start, scope, flag, full, cur, nxt, vstamp, stamp, changed, n_changed)
            elif k == NEQ:
                n_changed = neq(c, start, scope, param, dsize, cur, nxt, vstamp, stamp, changed, n_changed)
            elif k == TABLE2:
                n_changed = table2(c, start, scope, table, tstart, dsize, cur, nxt, vstamp, stamp, changed, n_changed)
            else:
                n_changed = linear(c, start, scope, coeff, flag, param, dsize, cur, nxt, vstamp, stamp, changed,
                                   n_changed)
            if n_changed == CONFLICTED:
                return -sweeps
        if n_changed == 0:
            return sweeps
        counter[0] += 1
        stamp = counter[0]
        n_dirty = 0
        for i in range(n_changed):
            v = changed[i]
            old = cur[v]
            new = nxt[v]
            if new == U0:
                return -sweeps
            cur[v] = new
            n_dirty = wake(v, old, new, kind, vstart, vcons, count_row, dsize, counts, cstamp, stamp, dirty, n_dirty)


# --- search ---------------------------------------------------------------------------------------------


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
        pr = np.int64(prio[var, v])
        if pr > best_p:
            best_p = pr
            best_v = v
        m &= m - U1
    return best_v


@njit(inline="always")
def grow_rows(a, used):
    b = np.empty((2 * a.shape[0], a.shape[1]), dtype=a.dtype)
    b[:used] = a[:used]
    return b


@njit(inline="always")
def grow(a, used):
    b = np.empty(2 * a.shape[0], dtype=a.dtype)
    b[:used] = a[:used]
    return b


@njit(cache=True, nogil=True)
def solve_range(kind, start, scope, coeff, flag, param, table, tstart, vstart, vcons, count_row, ncount, dsize,
                domains, prios, has_prio, mode, node_limit, max_solutions, first, step,
                out_domains, out_status, out_nodes, out_solutions, out_sweeps, control):
    """Solve instances ``first, first + step, ...`` of a batch; scratch is allocated once per call.

    ``control`` is shared with other threads while this runs: ``control[0] != 0`` asks to abort (checked at
    every search node; the instances not yet finished keep status 0), and ``control[1 + first]`` counts the
    nodes this call has searched, so a watcher can tell a long search from a hung one.

    A search frame holds a parent's fixpoint (domains and holder counts) and its branch (variable,
    value); the right child is made from it when the frame is popped.
    """
    nvars = domains.shape[1]
    ncons = kind.shape[0]
    cur = np.empty(nvars, dtype=np.uint64)
    nxt = np.empty(nvars, dtype=np.uint64)
    root = np.empty(nvars, dtype=np.uint64)
    vstamp = np.zeros(nvars, dtype=np.int64)
    cstamp = np.zeros(ncons, dtype=np.int64)
    dirty = np.empty(max(ncons, 1), dtype=np.int64)
    changed = np.empty(nvars, dtype=np.int64)
    counter = np.zeros(1, dtype=np.int64)
    # uint8 holder counts (an exact ALLDIFF has at most 64 variables), padded to whole words so that a
    # frame saves them as uint64 words
    count_words = max((ncount * dsize + 7) // 8, 1)
    counts_w = np.zeros(count_words, dtype=np.uint64)
    counts = counts_w.view(np.uint8)
    stack = np.empty((64, nvars), dtype=np.uint64)
    stack_counts = np.empty((64, count_words), dtype=np.uint64)
    stack_var = np.empty(64, dtype=np.int64)
    stack_val = np.empty(64, dtype=np.int64)
    for b in range(first, domains.shape[0], step):
        if control[0] != 0:
            return
        prio = prios[b if has_prio else 0]
        out = out_domains[b]
        copy_words(cur, domains[b])
        n_dirty = wake_all(kind, start, scope, count_row, dsize, cur, counts, dirty)
        if mode == MODE_PROPAGATE:
            sw = propagate(kind, start, scope, coeff, flag, param, table, tstart, vstart, vcons, count_row, dsize,
                           cur, counts, nxt, vstamp, cstamp, dirty, n_dirty, changed, counter)
            out_nodes[b] = 1
            control[1 + first] += 1
            out_sweeps[b] = abs(sw)
            if sw < 0:
                out[:] = U0
                out_status[b] = CONFLICT
                out_solutions[b] = 0
            else:
                copy_words(out, cur)
                solved = branch_var(cur) < 0
                out_status[b] = SOLVED if solved else FIXPOINT
                out_solutions[b] = 1 if solved else 0
            continue

        nodes = 0
        solutions = 0
        sweeps = 0
        top = 0
        have_first = False
        hit_limit = False
        while True:
            if nodes == node_limit:
                hit_limit = True
                break
            if control[0] != 0:
                return
            nodes += 1
            control[1 + first] += 1
            sw = propagate(kind, start, scope, coeff, flag, param, table, tstart, vstart, vcons, count_row, dsize,
                           cur, counts, nxt, vstamp, cstamp, dirty, n_dirty, changed, counter)
            sweeps += abs(sw)
            if sw > 0:
                if nodes == 1:
                    copy_words(root, cur)
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
                    if top == stack.shape[0]:
                        stack = grow_rows(stack, top)
                        stack_counts = grow_rows(stack_counts, top)
                        stack_var = grow(stack_var, top)
                        stack_val = grow(stack_val, top)
                    copy_words(stack[top], cur)
                    copy_words(stack_counts[top], counts_w)
                    stack_var[top] = var
                    stack_val[top] = val
                    top += 1
                    old = cur[var]  # left child: var = val
                    cur[var] = bit(val)
                    counter[0] += 1
                    n_dirty = wake(var, old, cur[var], kind, vstart, vcons, count_row, dsize, counts, cstamp,
                                   counter[0], dirty, 0)
                    continue
            if top == 0:
                break
            top -= 1
            copy_words(cur, stack[top])
            copy_words(counts_w, stack_counts[top])
            var = stack_var[top]
            old = cur[var]  # right child: var != val
            cur[var] = old & ~bit(stack_val[top])
            counter[0] += 1
            n_dirty = wake(var, old, cur[var], kind, vstart, vcons, count_row, dsize, counts, cstamp, counter[0],
                           dirty, 0)
        out_nodes[b] = nodes
        out_sweeps[b] = sweeps
        out_solutions[b] = solutions
        if hit_limit:
            out_status[b] = LIMIT
            if not have_first:
                copy_words(out, root)  # the root always ran (node_limit >= 1) and was no conflict
        elif have_first:
            out_status[b] = SOLVED
        else:
            out_status[b] = UNSAT
            out[:] = U0
# fmt: on
