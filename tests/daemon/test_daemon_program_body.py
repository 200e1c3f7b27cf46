"""The chunked parse of a RegisterProgramRequest (fpgacspd.program_body) agrees with protobuf's own.

The daemon walks the request's top level itself and hands protobuf a few thousand constraints at a time, so that
no single parse of a huge program holds the GIL (0.11 s for a million NEQ constraints). It must mean exactly what
protobuf's parse means: any field order, the last scalar wins, unknown fields skipped, every constraint in order;
and a malformed body must raise BodyError, never anything else.
"""

from __future__ import annotations

import pytest
from fpgacsp_proto.convert import program_from_parts, program_from_proto, program_to_proto
from fpgacsp_proto.isa import Program
from fpgacsp_proto.v1 import solver_pb2
from fpgacspd import program_body
from fpgacspd.program_body import BodyError, parse_register_body
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import programs

from bench._hostile import varint


def decoded(body: bytes) -> tuple[Program, bool]:
    parts = parse_register_body(body)
    assert parts.has_program
    return program_from_parts(parts.num_vars, parts.domain_size, parts.constraints()), parts.pin


@pytest.fixture(params=[1, 2, 4096], ids=["chunk-1", "chunk-2", "chunk-4096"])
def chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(program_body, "CHUNK", request.param)
    return int(request.param)


@settings(max_examples=60, deadline=None)
@given(program=programs(max_constraints=12), pin=st.booleans())
def test_the_chunked_parse_gives_protobufs_program(program: Program, pin: bool) -> None:
    for size in (1, 3, 4096):
        program_body.CHUNK = size
        try:
            body = solver_pb2.RegisterProgramRequest(program=program_to_proto(program), pin=pin).SerializeToString()
            assert decoded(body) == (program, pin)
            assert parse_register_body(body).num_constraints == len(program.constraints)
        finally:
            program_body.CHUNK = 4096


@pytest.mark.usefixtures("chunk")
def test_fields_in_any_order_the_last_scalar_wins_and_unknown_fields_are_skipped() -> None:
    msg = program_to_proto(Program(3, 4, ()))
    cons = [program_to_proto(p).constraints[0] for p in _three_constraints()]
    wire = _field(3, cons[0].SerializeToString())
    wire += _varint_field(1, 99)  # num_vars, overwritten below
    wire += _field(3, cons[1].SerializeToString())
    wire += _field(15, b"unknown bytes") + _varint_field(14, 7)  # unknown fields between constraints
    wire += _field(3, cons[2].SerializeToString())
    wire += _varint_field(1, msg.num_vars) + _varint_field(2, msg.domain_size)
    body = _varint_field(2, 1) + _field(1, wire) + _field(9, b"ignored")
    want = solver_pb2.RegisterProgramRequest.FromString(body)
    got, pin = decoded(body)
    assert got == program_from_proto(want.program) and pin is want.pin is True


def test_a_request_without_a_program_is_reported_as_such() -> None:
    parts = parse_register_body(solver_pb2.RegisterProgramRequest(pin=True).SerializeToString())
    assert not parts.has_program and parts.pin


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200))
def test_random_bytes_are_a_body_error_or_mean_what_protobuf_says(body: bytes) -> None:
    try:
        want = solver_pb2.RegisterProgramRequest.FromString(body)
    except DecodeError:
        want = None
    try:
        parts = parse_register_body(body)
        constraints = list(parts.constraints()) if parts.has_program else []
    except BodyError:
        return  # protobuf may accept what we refuse (groups, a second program to merge): INVALID_ARGUMENT then
    assert want is not None, "we accepted bytes protobuf refuses"
    assert parts.has_program == want.HasField("program") and parts.pin == want.pin
    if parts.has_program:
        assert (parts.num_vars, parts.domain_size) == (want.program.num_vars, want.program.domain_size)
        assert constraints == list(want.program.constraints)


@pytest.mark.parametrize("body", [b"\x0a\x05\x08", b"\x0a\x02\x1a\x09", b"\xff" * 11, b"\x00\x01", b"\x0b"])
def test_malformed_bodies_are_body_errors(body: bytes) -> None:
    with pytest.raises(BodyError):
        parts = parse_register_body(body)
        list(parts.constraints())


def _three_constraints() -> list[Program]:
    from fpgacsp_proto.isa import AllDiff, Neq, make_program

    return [make_program(3, 4, [c]) for c in (Neq(0, 1, 1), AllDiff((0, 1, 2)), Neq(1, 2))]


def _varint_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def _field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload
