"""Hostile requests as hypothesis strategies, and the fuzz run that sends them to a real daemon.

The strategies build what the issue lists, from the protos: random bytes to every method; programs with huge N
and D, D = 0 and 65, duplicate and out-of-range variables, giant TABLE2 rows, LINEAR coefficients and right-hand
sides near overflow; Solve requests with unknown ids, batch 0 and enormous, domains and priorities of wrong
lengths, extreme limits and unknown modes. :func:`run_fuzz` sends ``count`` of them (hypothesis drives the
generation, seeded, with no example database) and, every ``check_every`` requests, one valid Solve whose answer
must equal the local engine's. Used by ``bench/fuzz.py`` (100,000 on demand) and ``tests/e2e/test_e2e_fuzz.py``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np
from fpgacsp._codec import solve_result  # the client's own decoding of a SolveResponse
from fpgacsp_proto.bitset import pack_domains
from fpgacsp_proto.convert import program_to_proto
from fpgacsp_proto.isa import Program
from fpgacsp_proto.limits import MAX_MESSAGE_BYTES
from fpgacsp_proto.v1 import isa_pb2, solver_pb2
from fpgacspd.engine import BatchResult
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench._hostile import METHODS

U32 = 2**32 - 1
U64 = 2**64 - 1
_edge_u32 = st.sampled_from([0, 1, 2, 3, 63, 64, 65, 2**20, 2**20 + 1, 2**31, U32])
_edge_u64 = st.sampled_from([0, 1, 2, 2**31, 2**32, 2**63 - 1, 2**63, U64])
_small_var = st.integers(0, 12) | _edge_u32
_int32 = st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31)]) | st.integers(-(2**31), 2**31 - 1)
_int64 = st.sampled_from([0, 2**62, -(2**62), 2**63 - 1, -(2**63)]) | st.integers(-(2**63), 2**63 - 1)


@st.composite
def constraints(draw: st.DrawFn) -> isa_pb2.Constraint:
    c = isa_pb2.Constraint()
    kind = draw(st.sampled_from(["alldiff", "neq", "table2", "linear", "none"]))
    if kind == "alldiff":
        c.alldiff.vars.extend(draw(st.lists(_small_var, max_size=70)))  # duplicates and out of range included
        c.alldiff.exact = draw(st.booleans())
    elif kind == "neq":
        c.neq.x, c.neq.y, c.neq.k = draw(_small_var), draw(_small_var), draw(_int32)
    elif kind == "table2":
        c.table2.x, c.table2.y = draw(_small_var), draw(_small_var)
        rows = draw(st.lists(st.integers(0, U64), max_size=70) | st.just([U64] * 65))  # giant: 65 rows
        c.table2.rows.extend(rows)
    elif kind == "linear":
        n = draw(st.integers(0, 6))
        c.linear.vars.extend(draw(st.lists(_small_var, min_size=n, max_size=n)))
        c.linear.coeffs.extend(draw(st.lists(_int32, min_size=draw(st.sampled_from([n, n, n + 1])),
                                             max_size=n + 1)))  # fmt: skip
        c.linear.op = draw(st.integers(0, 3))  # type: ignore[assignment]
        c.linear.rhs = draw(_int64)
    return c


@st.composite
def programs(draw: st.DrawFn) -> isa_pb2.Program:
    return isa_pb2.Program(
        num_vars=draw(_small_var), domain_size=draw(st.sampled_from([0, 1, 2, 9, 63, 64, 65, 2**31, U32])),
        constraints=draw(st.lists(constraints(), max_size=6)),
    )  # fmt: skip


@st.composite
def solves(draw: st.DrawFn, known_ids: tuple[str, ...]) -> solver_pb2.SolveRequest:
    ids = st.sampled_from([*known_ids, "0" * 64, "F" * 64, ""]) | st.text(max_size=80)
    batch = draw(st.sampled_from([0, 1, 2, 3, 65_537, 2**24, U32]) | st.integers(0, 5))
    words = draw(st.sampled_from([0, 1, 2, 81, 162, 81 * 2 + 1, 648]) | st.integers(0, 1000))
    return solver_pb2.SolveRequest(
        program_id=draw(ids), batch_size=batch,
        domains=draw(st.sampled_from([b"\xff\x01", b"\x00" * 2]).map(lambda w: w * words) | st.binary(max_size=400)),
        priorities=draw(st.just(b"") | st.binary(max_size=800)), mode=draw(st.integers(0, 7)),  # type: ignore[arg-type]
        node_limit=draw(_edge_u64), max_solutions=draw(_edge_u64),
    )  # fmt: skip


@st.composite
def requests(draw: st.DrawFn, known_ids: tuple[str, ...]) -> tuple[str, bytes]:
    """``(method path, body)``: a quarter each random bytes, a wrong program, a wrong Solve, an odd id."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        path = draw(st.sampled_from([p for p, _ in METHODS]))
        return path, draw(st.binary(max_size=120))
    if kind == 1:
        req = solver_pb2.RegisterProgramRequest(program=draw(programs()), pin=draw(st.booleans()))
        return "/fpgacsp.v1.Solver/RegisterProgram", req.SerializeToString()
    if kind == 2:
        return "/fpgacsp.v1.Solver/Solve", draw(solves(known_ids)).SerializeToString()
    path, request_type = draw(st.sampled_from([m for m in METHODS if not m[0].endswith(("/Solve", "/Reset"))]))
    message = request_type()
    if hasattr(message, "program_id"):
        message.program_id = draw(st.sampled_from([*known_ids, "", "f" * 64, "é" * 64]) | st.text(max_size=70))
    return path, message.SerializeToString()


@dataclass
class FuzzResult:
    sent: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    checked: int = 0  # valid Solves sent between the fuzz
    wrong: int = 0  # of those, answers that differ from the engine (or were not OK)
    seconds: float = 0.0


def run_fuzz(
    address: str, count: int, program: Program, domains: np.ndarray, want: BatchResult, check_every: int = 50,
    progress: Callable[[int], None] | None = None,
) -> FuzzResult:  # fmt: skip
    """Send ``count`` hostile requests (Admin.Reset left out: it is an admin's right, not a malformed input)."""
    out = FuzzResult()
    start = time.monotonic()
    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]) as channel:
        stub_of: dict[str, grpc.UnaryUnaryMultiCallable] = {}

        def call(path: str) -> grpc.UnaryUnaryMultiCallable:
            if path not in stub_of:
                stub_of[path] = channel.unary_unary(path, request_serializer=_raw, response_deserializer=_raw)
            return stub_of[path]

        registration = solver_pb2.RegisterProgramRequest(program=program_to_proto(program), pin=True)

        def register() -> str:
            reply = call("/fpgacsp.v1.Solver/RegisterProgram")(registration.SerializeToString(), timeout=30)
            return str(solver_pb2.RegisterProgramResponse.FromString(reply).program_id)

        pid = register()

        def check(i: int) -> None:
            rows = slice(i % (len(domains) - 4), i % (len(domains) - 4) + 4)
            body = solver_pb2.SolveRequest(program_id=pid, batch_size=4, domains=pack_domains(domains[rows], 9))
            out.checked += 1
            for attempt in range(2):
                try:
                    answer = call("/fpgacsp.v1.Solver/Solve")(body.SerializeToString(), timeout=30)
                    break
                except grpc.RpcError as e:
                    # the fuzz releases known ids too (anyone may, without auth): register again, as clients do
                    if e.code() != grpc.StatusCode.NOT_FOUND or attempt:
                        out.wrong += 1
                        return
                    register()
            got = solve_result(solver_pb2.SolveResponse.FromString(answer), program, 4)
            fields = ("domains", "status", "nodes", "solutions", "sweeps")
            out.wrong += not all(np.array_equal(getattr(got, f), getattr(want, f)[rows]) for f in fields)

        @settings(max_examples=count, database=None, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])  # fmt: skip
        @given(requests((pid,)))
        def send(request: tuple[str, bytes]) -> None:
            path, body = request
            if path.endswith("/Reset"):
                return
            try:
                call(path)(body, timeout=30)
                code = "OK"
            except grpc.RpcError as e:
                code = e.code().name
            out.codes[code] += 1
            out.sent += 1
            if out.sent % check_every == 0:
                check(out.sent)
            if progress is not None and out.sent % 10_000 == 0:
                progress(out.sent)

        send()  # derandomize=True: hypothesis' own fixed seed, the same requests in every run
    out.seconds = time.monotonic() - start
    return out


def _raw(data: bytes) -> bytes:
    return data
