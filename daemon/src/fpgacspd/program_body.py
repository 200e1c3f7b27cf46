"""A ``RegisterProgramRequest`` from its bytes: parsed in pieces, size-checked before decoding, prepared anywhere.

Registering a program of a million constraints costs seconds of pure Python (parse, decode, validate, encode,
hash) and allocates millions of objects. The daemon does that in a child process (:func:`prepare_body`; this
module imports nothing heavy, so the child starts in a fraction of a second), and only the canonical encoding
comes back: the event loop's process never holds the GIL for it, never runs the garbage collector over those
objects, and does not keep the memory. Small bodies are decoded in place (:func:`decode_body`).

The parse itself:

Protobuf parses a message in one C call: 0.11 s for a program of a million NEQ constraints (11 MB), during which
no other thread, the event loop included, runs a single bytecode (the issue saw a health check wait 29.7 s behind
such a registration; decoding on a worker thread fixed most of it, this the rest). So the daemon walks the wire
format's top level itself (field tags and lengths only: the outer request, then the program's fields), checks the
constraint count before a constraint is decoded, and hands protobuf runs of ``CHUNK`` consecutive constraints at a
time: the bytes of consecutive ``constraints`` entries are themselves a valid ``Program`` encoding, so each run
parses in about a millisecond, with the GIL free in between. Semantics are protobuf's: fields in any order, the
last value of a repeated scalar wins, unknown fields skipped; anything malformed raises :class:`BodyError`.
"""

from __future__ import annotations

import gc
import pickle
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from typing import NamedTuple

from fpgacsp_proto.convert import program_from_parts
from fpgacsp_proto.encoding import encode_program
from fpgacsp_proto.isa import Program, ProgramError
from fpgacsp_proto.v1 import isa_pb2, solver_pb2
from google.protobuf.message import DecodeError

from .errors import InvalidArgument, ResourceExhausted

CHUNK = 4096  # constraints per protobuf parse: about a millisecond each
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MAX_FIELD = (1 << 29) - 1
_REQUEST_PROGRAM, _REQUEST_PIN = 1, 2
_PROGRAM_NUM_VARS, _PROGRAM_DOMAIN_SIZE, _PROGRAM_CONSTRAINTS = 1, 2, 3


class BodyError(ValueError):
    """The bytes are not a well-formed message."""


@dataclass
class RegisterBody:
    """The request's parts: ``program`` present or not, its scalars, and where its constraints lie."""

    has_program: bool = False
    pin: bool = False
    num_vars: int = 0
    domain_size: int = 0
    runs: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, count) of consecutive entries
    program: memoryview | None = None

    @property
    def num_constraints(self) -> int:
        return sum(count for _, _, count in self.runs)

    def constraints(self) -> Iterator[isa_pb2.Constraint]:
        """The constraints in order, parsed one run (at most ``CHUNK`` of them) at a time."""
        assert self.program is not None
        for start, end, _ in self.runs:
            try:
                part = isa_pb2.Program.FromString(self.program[start:end])
            except DecodeError as e:
                raise BodyError(f"program.constraints: {e}") from e
            yield from part.constraints


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise BodyError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise BodyError("varint longer than 10 bytes")


def _entry(data: memoryview, pos: int) -> tuple[int, int, int]:
    """One field at ``pos``: ``(field number, value or payload start, end)``; for LEN fields the middle is where
    the payload starts, for varints the value."""
    tag, pos = _varint(data, pos)
    number, wire = tag >> 3, tag & 7
    if number == 0 or number > _MAX_FIELD:
        raise BodyError(f"field number {number} outside [1, 2^29 - 1]")
    if wire == _VARINT:
        value, pos = _varint(data, pos)
        return number, value, pos
    if wire == _LEN:
        length, pos = _varint(data, pos)
        if pos + length > len(data):
            raise BodyError(f"field {number}: length {length} runs past the end")
        return number, pos, pos + length
    size = {_I64: 8, _I32: 4}.get(wire)
    if size is None or pos + size > len(data):
        raise BodyError(f"field {number}: wire type {wire} not allowed here or truncated")
    return number, pos, pos + size


def parse_register_body(body: bytes) -> RegisterBody:
    """Walk the request and its program's top level (no constraint decoded); raises :class:`BodyError`."""
    data = memoryview(body)
    out = RegisterBody()
    pos = 0
    program: tuple[int, int] | None = None
    while pos < len(data):
        start = pos
        number, middle, pos = _entry(data, pos)
        wire = _wire_of(data, start)
        if number == _REQUEST_PROGRAM and wire == _LEN:
            program = (middle, pos)  # a repeated message field would merge; one program is what clients send
        elif number == _REQUEST_PIN and wire == _VARINT:
            out.pin = bool(middle)
    if program is None:
        return out
    out.has_program = True
    out.program = data[program[0] : program[1]]
    _walk_program(out, out.program)
    return out


def _walk_program(out: RegisterBody, data: memoryview) -> None:
    pos = 0
    run_start, run_count = -1, 0
    while pos < len(data):
        start = pos
        number, middle, pos = _entry(data, pos)
        wire = _wire_of(data, start)
        if number == _PROGRAM_CONSTRAINTS and wire == _LEN:
            if run_count == 0:
                run_start = start
            run_count += 1
            if run_count == CHUNK:
                out.runs.append((run_start, pos, run_count))
                run_count = 0
            continue
        if run_count:
            out.runs.append((run_start, start, run_count))
            run_count = 0
        if wire == _VARINT and number == _PROGRAM_NUM_VARS:
            out.num_vars = middle & 0xFFFFFFFF  # uint32: protobuf truncates a longer varint the same way
        elif wire == _VARINT and number == _PROGRAM_DOMAIN_SIZE:
            out.domain_size = middle & 0xFFFFFFFF
    if run_count:
        out.runs.append((run_start, len(data), run_count))


def _wire_of(data: memoryview, start: int) -> int:
    return data[start] & 7


# -- limits, decoding, preparing -------------------------------------------------------------------------------

REQUEST_TYPE = solver_pb2.RegisterProgramRequest.DESCRIPTOR.full_name


class SizeLimits(NamedTuple):
    """``[registry]``'s per-program limits (plain values: a child process gets them without the config)."""

    max_vars: int
    max_constraints: int
    max_program_bytes: int


class PreparedBody(NamedTuple):
    """What a child process sends back: the program's name, canonical encoding and shape, and the pin flag."""

    program_id: str
    encoding: bytes
    pin: bool
    num_vars: int
    domain_size: int
    num_constraints: int


def check_shape(num_vars: int, num_constraints: int, limits: SizeLimits) -> None:
    if num_vars > limits.max_vars:
        raise ResourceExhausted(f"program.num_vars: {num_vars} variables exceed registry.max_vars = {limits.max_vars}")
    if num_constraints > limits.max_constraints:
        raise ResourceExhausted(
            f"program.constraints: {num_constraints} constraints exceed registry.max_constraints = "
            f"{limits.max_constraints}"
        )


def check_encoding(length: int, limits: SizeLimits) -> None:
    if length > limits.max_program_bytes:
        raise ResourceExhausted(
            f"program: canonical encoding of {length} bytes exceeds registry.max_program_bytes = "
            f"{limits.max_program_bytes}"
        )


def undecodable(size: int, error: str, message_type: str = REQUEST_TYPE) -> InvalidArgument:
    """The answer to a request body that does not parse as its method's message."""
    return InvalidArgument(f"request: {size} bytes do not parse as {message_type} ({error})")


def check_body(body: bytes, limits: SizeLimits) -> RegisterBody:
    """The request's top level, walked and checked against the limits before a single constraint is decoded
    (a million-constraint body is refused in well under a second, not after seconds of decoding), and the
    message size against what the canonical encoding may take (the wire form is never much larger)."""
    try:
        parts = parse_register_body(body)
    except BodyError as e:
        raise undecodable(len(body), str(e)) from e
    if not parts.has_program:
        raise InvalidArgument("program: missing (set RegisterProgramRequest.program)")
    check_shape(parts.num_vars, parts.num_constraints, limits)
    if len(body) > 2 * limits.max_program_bytes:
        raise ResourceExhausted(
            f"program: a message of {len(body)} bytes cannot encode within registry.max_program_bytes = "
            f"{limits.max_program_bytes}"
        )
    return parts


def decode_body(body: bytes, limits: SizeLimits) -> tuple[Program, bool]:
    """``(program, pin)``, after :func:`check_body`."""
    parts = check_body(body, limits)
    try:
        return program_from_parts(parts.num_vars, parts.domain_size, parts.constraints()), parts.pin
    except BodyError as e:
        raise undecodable(len(body), str(e)) from e
    except ProgramError as e:
        raise InvalidArgument(f"program: {e}") from e


def prepare_body(body: bytes, limits: SizeLimits) -> PreparedBody:
    """Decode, validate, encode and name a registration: what the daemon's child process runs."""
    gc.disable()  # no cycles are made; a collection over millions of fresh objects would only cost time
    program, pin = decode_body(body, limits)
    encoding = encode_program(program)
    check_encoding(len(encoding), limits)
    n, d, c = program.num_vars, program.domain_size, len(program.constraints)
    return PreparedBody(sha256(encoding).hexdigest(), encoding, pin, n, d, c)


def _child_main() -> int:
    """``python -m fpgacspd.program_body MAX_VARS MAX_CONSTRAINTS MAX_PROGRAM_BYTES``: a request body on stdin,
    the pickled :class:`PreparedBody` (or the error to raise) on stdout. Only the daemon runs this."""
    limits = SizeLimits(*(int(a) for a in sys.argv[1:4]))
    body = sys.stdin.buffer.read()
    try:
        result: object = prepare_body(body, limits)
    except (InvalidArgument, ResourceExhausted) as e:
        result = e
    sys.stdout.buffer.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    # under its own name, so that what is pickled names fpgacspd.program_body, not __main__
    from fpgacspd.program_body import _child_main as main

    sys.exit(main())
