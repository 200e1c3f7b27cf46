"""Canonical program encoding and program ids: the names programs are registered under.

A program id must be the same on every client, daemon and card loader, today and after any refactor,
or registered programs become unreachable. Hence a hardcoded regression vector below.
"""

from __future__ import annotations

import re
import struct

import pytest
from fpgacsp_proto.encoding import MAGIC, decode_program, encode_program, program_id
from fpgacsp_proto.isa import (
    ISA_VERSION,
    MAX_COEFF,
    MAX_RHS,
    AllDiff,
    Linear,
    LinearOp,
    Neq,
    Program,
    ProgramError,
    Table2,
    make_program,
)
from hypothesis import given
from hypothesis import strategies as st
from strategies import programs

HEADER = struct.Struct("<4sHIBI")


def tiny() -> Program:
    """One constraint of each kind; its id is pinned in REGRESSION_ID."""
    return make_program(
        3,
        3,
        [
            AllDiff((0, 1, 2), exact=True),
            Neq(0, 1, -1),
            Table2(1, 2, (0b001, 0b110, 0b011)),
            Linear((2, -3), (0, 2), LinearOp.LE, 4),
        ],
    )


# Regression vector: computed once from this encoder (ISA v1) and pinned on purpose. If it changes, every
# program id already registered with a daemon or cached by a client changes too: that needs a new ISA version,
# not an updated constant.
REGRESSION_ID = "217198ac40304b5bb7f4e254f31f3983714b4ca6ce6ebc5a610686fee77e9592"
REGRESSION_BYTES = bytes.fromhex(
    "46435350 0100 03000000 03 04000000"  # header: FCSP, v1, N = 3, D = 3, 4 constraints
    "01 01 03000000 00000000 01000000 02000000"  # ALLDIFF exact (0, 1, 2)
    "02 00000000 01000000 ffffffff"  # NEQ x0 != x1 - 1
    "03 01000000 02000000 0100000000000000 0600000000000000 0300000000000000"  # TABLE2 x1, x2, rows
    "04 00 0400000000000000 02000000 02000000 00000000 fdffffff 02000000"  # LINEAR 2 x0 - 3 x2 <= 4
)


def test_program_id_regression_vector() -> None:
    assert encode_program(tiny()) == REGRESSION_BYTES
    assert program_id(tiny()) == REGRESSION_ID


def test_encoding_layout() -> None:
    """Header fields are little-endian at fixed offsets: magic, ISA version, N, D, constraint count."""
    data = encode_program(tiny())
    assert HEADER.unpack_from(data) == (MAGIC, ISA_VERSION, 3, 3, 4)
    assert data[:6] == b"FCSP\x01\x00"


@given(programs(allow_extreme=True))
def test_round_trip(p: Program) -> None:
    data = encode_program(p)
    assert decode_program(data) == p
    assert encode_program(decode_program(data)) == data


@given(programs())
def test_program_id_is_a_pure_function_of_the_program(p: Program) -> None:
    pid = program_id(p)
    assert re.fullmatch("[0-9a-f]{64}", pid)
    rebuilt = make_program(p.num_vars, p.domain_size, list(p.constraints))
    assert program_id(rebuilt) == pid
    assert program_id(decode_program(encode_program(p))) == pid


@pytest.mark.parametrize(
    "other",
    [
        make_program(3, 3, [AllDiff((0, 1, 2), exact=False), Neq(0, 1, -1)]),
        make_program(3, 3, [AllDiff((0, 1, 2), exact=True), Neq(0, 1, 1)]),
        make_program(3, 3, [Neq(0, 1, -1), AllDiff((0, 1, 2), exact=True)]),
        make_program(3, 3, [AllDiff((0, 2, 1), exact=True), Neq(0, 1, -1)]),
        make_program(4, 3, [AllDiff((0, 1, 2), exact=True), Neq(0, 1, -1)]),
    ],
)
def test_different_programs_get_different_ids(other: Program) -> None:
    base = make_program(3, 3, [AllDiff((0, 1, 2), exact=True), Neq(0, 1, -1)])
    assert program_id(other) != program_id(base)


def test_extreme_parameters_round_trip() -> None:
    p = make_program(
        2,
        64,
        [
            Neq(0, 1, -MAX_COEFF),
            Linear((MAX_COEFF, -MAX_COEFF), (0, 1), LinearOp.EQ, -MAX_RHS),
            Table2(0, 1, tuple((1 << 64) - 1 for _ in range(64))),
        ],
    )
    assert decode_program(encode_program(p)) == p


def test_encode_validates_first() -> None:
    with pytest.raises(ProgramError, match=r"^constraints\[0\] \(NEQ\): x and y are the same variable 0$"):
        encode_program(Program(2, 2, (Neq(0, 0),)))


@given(programs(), st.data())
def test_truncated_encoding_is_rejected(p: Program, data: st.DataObject) -> None:
    encoded = encode_program(p)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(
        ProgramError, match=r"^program encoding: (truncated in .* at byte \d+|\d+ constraints cannot fit)"
    ):
        decode_program(encoded[:cut])


def test_truncation_names_the_field() -> None:
    encoded = encode_program(tiny())
    with pytest.raises(ProgramError, match=r"^program encoding: truncated in header at byte 0$"):
        decode_program(encoded[:10])
    with pytest.raises(ProgramError, match=r"^program encoding: truncated in constraints\[0\]\.vars at byte 21$"):
        decode_program(encoded[:25])


@given(programs(), st.binary(min_size=1, max_size=9))
def test_trailing_bytes_are_rejected(p: Program, extra: bytes) -> None:
    message = f"program encoding: {len(extra)} trailing bytes after the last constraint"
    with pytest.raises(ProgramError, match=f"^{re.escape(message)}$"):
        decode_program(encode_program(p) + extra)


def test_bad_magic_and_version() -> None:
    encoded = encode_program(tiny())
    with pytest.raises(ProgramError, match=re.escape("program encoding: bad magic b'XCSP', expected b'FCSP'")):
        decode_program(b"X" + encoded[1:])
    bumped = encoded[:4] + struct.pack("<H", ISA_VERSION + 1) + encoded[6:]
    with pytest.raises(ProgramError, match=re.escape("program encoding: ISA version 2 is not supported (expected 1)")):
        decode_program(bumped)


def test_absurd_constraint_count_is_rejected_early() -> None:
    data = HEADER.pack(MAGIC, ISA_VERSION, 1, 2, 1_000_000)
    with pytest.raises(ProgramError, match=r"^program encoding: 1000000 constraints cannot fit in 15 bytes$"):
        decode_program(data)


def test_unknown_kind_and_bad_op() -> None:
    head = HEADER.pack(MAGIC, ISA_VERSION, 2, 2, 1)
    with pytest.raises(ProgramError, match=r"^constraints\[0\]\.kind: unknown constraint kind 9$"):
        decode_program(head + b"\x09")
    linear = struct.pack("<BBqIiI", 4, 2, 0, 1, 1, 0)  # op = 2
    with pytest.raises(ProgramError, match=r"^constraints\[0\] \(LINEAR\): op must be 0 \(LE\) or 1 \(EQ\), got 2$"):
        decode_program(head + linear)


def test_decoded_program_is_validated() -> None:
    """Well-formed bytes of an invalid program (NEQ on variable 5 of 2) fail validation, not later."""
    head = HEADER.pack(MAGIC, ISA_VERSION, 2, 2, 1)
    neq = struct.pack("<BIIi", 2, 0, 5, 0)
    with pytest.raises(ProgramError, match=r"^constraints\[0\] \(NEQ\): y = 5 is out of range \[0, 2\)$"):
        decode_program(head + neq)
