"""The host-side compiler: a program's canonical encoding -> the RTL engine's program-memory image.

The engine does not parse the byte stream of docs/isa.md; its program memory holds fixed-size records it can read
in one cycle. This module is the one place that layout is produced (docs/rtl.md describes it word by word), from
the same canonical bytes the driver sends in a LOAD, so the RTL runs exactly what a card would receive. Programs
the configuration cannot hold are refused with the field and the limit named (what a card reports as
``OVER_CAPABILITY``).

Image, 32-bit words::

    0: N   1: D   2: C   3: IMAGE_VERSION   (then zeros up to one record stride)
    (c + 1) * record_stride: the record of constraint c (record_words used, the rest of the stride zero)
        +0  kind (bits 2:0) | flag << 8 (ALLDIFF exact, LINEAR op: 0 LE, 1 EQ) | m << 16 (scope length)
        +1  NEQ k (two's complement)
        +2  LINEAR rhs, low word    +3  high word (two's complement)
        +4 .. +4+MS-1               scope: ALLDIFF/LINEAR vars, NEQ/TABLE2 x then y, unused 0
        +4+MS .. +4+2MS-1           LINEAR coefficients (two's complement), unused 0
        +4+2MS .. +4+2MS+2DW-1      TABLE2 rows[a] as (low word, high word), a = 0 .. DW-1, unused 0
"""

from __future__ import annotations

from fpgacsp_proto.encoding import decode_program
from fpgacsp_proto.isa import AllDiff, Kind, Linear, Neq, Program, Table2

from .params import EngineParams

IMAGE_VERSION = 1
HEADER_WORDS = 4
MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1


class ImageError(ValueError):
    """The program does not fit the engine configuration; the message names the field and the limit."""


def _check(value: int, limit: int, what: str, param: str) -> None:
    if value > limit:
        raise ImageError(f"{what} = {value} exceeds the engine's {limit} ({param})")


def compile_program(program: Program | bytes, params: EngineParams) -> list[int]:
    """The program-memory image (32-bit words) of ``program`` (a Program or its canonical encoding)."""
    p = decode_program(program) if isinstance(program, bytes | bytearray | memoryview) else program
    if not isinstance(p, Program):
        raise TypeError(f"program: expected a Program or its canonical encoding, got {type(p).__name__}")
    _check(p.num_vars, params.num_vars, "num_vars", "NV")
    _check(p.domain_size, params.domain_width, "domain_size", "DW")
    _check(len(p.constraints), params.constraints, "len(constraints)", "NC")
    pad = [0] * (params.record_stride - params.record_words)
    words = [p.num_vars, p.domain_size, len(p.constraints), IMAGE_VERSION] + [0] * (params.record_stride - HEADER_WORDS)
    for i, c in enumerate(p.constraints):
        words += _record(i, c, params) + pad
    if params.scopes and len(p.constraints) != len(params.scopes):
        # the wired engine evaluates every wired lane in every sweep (its lanes' validity is a constant)
        raise ImageError(
            f"len(constraints) = {len(p.constraints)}: this engine wires exactly {len(params.scopes)} scopes "
            "(SCOPES: it runs only programs of its structure)"
        )
    return words


def _record(i: int, c: object, params: EngineParams) -> list[int]:
    ms, dw = params.max_scope, params.domain_width
    rec = [0] * params.record_words
    kind = Kind(c.kind)  # type: ignore[attr-defined]
    if not params.supports(kind):
        raise ImageError(f"constraints[{i}] ({kind.name}): this engine is built without {kind.name} units (KINDS)")
    scope: tuple[int, ...]
    flag = 0
    if isinstance(c, AllDiff):
        scope, flag = c.vars, int(c.exact)
    elif isinstance(c, Neq):
        scope = (c.x, c.y)
        rec[1] = c.k & MASK32
    elif isinstance(c, Table2):
        scope = (c.x, c.y)
        for a, row in enumerate(c.rows):
            rec[4 + 2 * ms + 2 * a] = row & MASK32
            rec[4 + 2 * ms + 2 * a + 1] = row >> 32
    elif isinstance(c, Linear):
        scope, flag = c.vars, int(c.op)
        rec[2], rec[3] = c.rhs & MASK64 & MASK32, (c.rhs & MASK64) >> 32
        for j, a in enumerate(c.coeffs):
            rec[4 + ms + j] = a & MASK32
    else:
        raise TypeError(f"constraints[{i}]: unknown constraint {c!r}")
    _check(len(scope), ms, f"constraints[{i}] ({kind.name}): scope length", "MS")
    if i < len(params.scopes) and tuple(scope) != params.scopes[i]:
        raise ImageError(
            f"constraints[{i}] ({kind.name}): scope {tuple(scope)} is not the engine's wired scope {params.scopes[i]} "
            "(SCOPES: this engine runs only programs of its structure)"
        )
    rec[0] = int(kind) | flag << 8 | len(scope) << 16
    rec[4 : 4 + len(scope)] = scope
    assert len(rec) == params.record_words and dw == params.domain_width
    return rec


def image_words(params: EngineParams) -> int:
    """Words of program memory the engine has: the header's stride and ``NC`` records."""
    return (params.constraints + 1) * params.record_stride
