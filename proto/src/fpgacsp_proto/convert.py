"""Conversions between protobuf messages and the in-memory model, shared by the client and the daemon.

Both sides convert in exactly one place (here), so a program means the same thing on either end of the
wire and a malformed message gets the same ``ProgramError`` text the client would have raised locally.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .isa import AllDiff, Constraint, Linear, LinearOp, Neq, Program, ProgramError, Table2, make_program
from .v1 import isa_pb2


def program_to_proto(p: Program) -> isa_pb2.Program:
    msg = isa_pb2.Program(num_vars=p.num_vars, domain_size=p.domain_size)
    for c in p.constraints:
        entry = msg.constraints.add()
        if isinstance(c, AllDiff):
            entry.alldiff.vars.extend(c.vars)
            entry.alldiff.exact = c.exact
        elif isinstance(c, Linear):
            entry.linear.coeffs.extend(c.coeffs)
            entry.linear.vars.extend(c.vars)
            entry.linear.op = int(c.op)
            entry.linear.rhs = c.rhs
        elif isinstance(c, Neq):
            entry.neq.x, entry.neq.y, entry.neq.k = c.x, c.y, c.k
        elif isinstance(c, Table2):
            entry.table2.x, entry.table2.y = c.x, c.y
            entry.table2.rows.extend(c.rows)
    return msg


def program_from_proto(msg: isa_pb2.Program) -> Program:
    """Validated :class:`Program`; raises :class:`ProgramError` naming the constraint and field."""
    return program_from_parts(msg.num_vars, msg.domain_size, msg.constraints)


def program_from_parts(num_vars: int, domain_size: int, constraints: Iterable[isa_pb2.Constraint]) -> Program:
    """:func:`program_from_proto` from a program's scalars and its constraint messages, which may come from
    several partial parses (the daemon parses a huge program a few thousand constraints at a time)."""
    return make_program(num_vars, domain_size, [_constraint(i, c) for i, c in enumerate(constraints)])


def _constraint(i: int, c: isa_pb2.Constraint) -> Constraint:
    which = c.WhichOneof("kind")
    if which == "alldiff":
        return AllDiff(tuple(c.alldiff.vars), c.alldiff.exact)
    if which == "neq":
        return Neq(c.neq.x, c.neq.y, c.neq.k)
    if which == "table2":
        return Table2(c.table2.x, c.table2.y, tuple(c.table2.rows))
    if which == "linear":
        if c.linear.op not in (LinearOp.LE, LinearOp.EQ):
            raise ProgramError(f"constraints[{i}] (LINEAR): op must be LE or EQ, got {c.linear.op}")
        return Linear(tuple(c.linear.coeffs), tuple(c.linear.vars), LinearOp(c.linear.op), c.linear.rhs)
    raise ProgramError(f"constraints[{i}]: no constraint kind set (alldiff, neq, table2 or linear)")


def pack_u64(values: np.ndarray) -> bytes:
    """Per-instance counters as little-endian uint64 bytes."""
    return np.ascontiguousarray(values, dtype="<u8").tobytes()


def unpack_u64(data: bytes, batch: int, field: str) -> np.ndarray:
    if len(data) != 8 * batch:
        raise ValueError(f"{field}: expected {8 * batch} bytes (uint64[{batch}]), got {len(data)}")
    return np.frombuffer(data, dtype="<u8").astype(np.int64)


def unpack_status(data: bytes, batch: int) -> np.ndarray:
    if len(data) != batch:
        raise ValueError(f"status: expected {batch} bytes (uint8[{batch}]), got {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).copy()
