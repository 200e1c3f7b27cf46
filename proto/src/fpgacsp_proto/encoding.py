"""Canonical binary encoding of a program and its content address.

The encoding, not protobuf's serialisation, defines a program's identity: protobuf does not promise one
byte sequence per message, and the client and the daemon (and a future card's loader) must compute the
same SHA-256 for the same program. Layout (all integers little-endian) is documented in docs/isa.md.
"""

from __future__ import annotations

import hashlib
import struct

from .isa import (
    ISA_VERSION,
    AllDiff,
    Constraint,
    Kind,
    Linear,
    LinearOp,
    Neq,
    Program,
    ProgramError,
    Table2,
    validate,
)

MAGIC = b"FCSP"
_HEADER = struct.Struct("<4sHIBI")  # magic, isa version, num_vars, domain_size, num_constraints


def encode_program(p: Program) -> bytes:
    """Canonical bytes of a valid program (validated first, so bad programs never get an id)."""
    validate(p)
    out = [_HEADER.pack(MAGIC, ISA_VERSION, p.num_vars, p.domain_size, len(p.constraints))]
    for c in p.constraints:
        out.append(_encode_constraint(c))
    return b"".join(out)


def program_id(p: Program) -> str:
    """Content address: lowercase hex SHA-256 of the canonical encoding."""
    return hashlib.sha256(encode_program(p)).hexdigest()


def _encode_constraint(c: Constraint) -> bytes:
    if isinstance(c, AllDiff):
        return struct.pack(f"<BBI{len(c.vars)}I", Kind.ALLDIFF, int(c.exact), len(c.vars), *c.vars)
    if isinstance(c, Neq):
        return struct.pack("<BIIi", Kind.NEQ, c.x, c.y, c.k)
    if isinstance(c, Table2):
        return struct.pack(f"<BII{len(c.rows)}Q", Kind.TABLE2, c.x, c.y, *c.rows)
    pairs = [x for a, v in zip(c.coeffs, c.vars, strict=True) for x in (a, v)]
    return struct.pack(f"<BBqI{'iI' * len(c.vars)}", Kind.LINEAR, int(c.op), c.rhs, len(c.vars), *pairs)


def decode_program(data: bytes) -> Program:
    """Inverse of :func:`encode_program`; raises :class:`ProgramError` on malformed or invalid bytes."""
    r = _Reader(data)
    magic, version, n, d, count = r.unpack(_HEADER.format)
    if magic != MAGIC:
        raise ProgramError(f"program encoding: bad magic {magic!r}, expected {MAGIC!r}")
    if version != ISA_VERSION:
        raise ProgramError(f"program encoding: ISA version {version} is not supported (expected {ISA_VERSION})")
    if count > len(data):  # every constraint takes at least one byte: reject absurd counts early
        raise ProgramError(f"program encoding: {count} constraints cannot fit in {len(data)} bytes")
    constraints = [_decode_constraint(r, d, i) for i in range(count)]
    if r.pos != len(data):
        raise ProgramError(f"program encoding: {len(data) - r.pos} trailing bytes after the last constraint")
    p = Program(n, d, tuple(constraints))
    validate(p)
    return p


def _decode_constraint(r: _Reader, d: int, i: int) -> Constraint:
    (kind,) = r.unpack("<B", f"constraints[{i}].kind")
    if kind == Kind.ALLDIFF:
        exact, m = r.unpack("<BI", f"constraints[{i}]")
        return AllDiff(r.unpack(f"<{m}I", f"constraints[{i}].vars"), bool(exact))
    if kind == Kind.NEQ:
        x, y, k = r.unpack("<IIi", f"constraints[{i}]")
        return Neq(x, y, k)
    if kind == Kind.TABLE2:
        x, y = r.unpack("<II", f"constraints[{i}]")
        return Table2(x, y, r.unpack(f"<{d}Q", f"constraints[{i}].rows"))
    if kind == Kind.LINEAR:
        op, rhs, m = r.unpack("<BqI", f"constraints[{i}]")
        if op not in (LinearOp.LE, LinearOp.EQ):
            raise ProgramError(f"constraints[{i}] (LINEAR): op must be 0 (LE) or 1 (EQ), got {op}")
        flat = r.unpack(f"<{'iI' * m}", f"constraints[{i}].terms")
        return Linear(tuple(flat[0::2]), tuple(flat[1::2]), LinearOp(op), rhs)
    raise ProgramError(f"constraints[{i}].kind: unknown constraint kind {kind}")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str, what: str = "header") -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProgramError(f"program encoding: truncated in {what} at byte {self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values
