"""The error contract of solver.proto, provoked over a real socket: code AND a message naming the field.

Bad input must never reach the device nor disturb other callers, so after the errors the same daemon still
answers a good request correctly (checked at the end of the module and by the shared fixture's teardown).
"""

from __future__ import annotations

import hashlib

import grpc
import numpy as np
import pytest
from daemon_process import DaemonProcess
from fpgacsp.problems import sudoku_program
from fpgacsp_proto.isa import Mode, Status
from fpgacsp_proto.v1 import admin_pb2, isa_pb2, solver_pb2
from fpgacspd.engine import FastEngine

from .wire import (
    RPC_TIMEOUT_S,
    SUDOKU_DIR,
    Scrape,
    Stubs,
    decode,
    expect_error,
    first_difference,
    local,
    register,
    settled_value,
    solve_request,
    sudoku_batch,
    wire_mode,
)

SUDOKU = sudoku_program()
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def pid(tcp: Stubs) -> str:
    return register(tcp.solver, SUDOKU)


@pytest.fixture(scope="module")
def domains() -> np.ndarray:
    return sudoku_batch(SUDOKU_DIR / "magictour_top1465.csv", 4)


def solve(stubs: Stubs, req: solver_pb2.SolveRequest) -> solver_pb2.SolveResponse:
    return stubs.solver.Solve(req, timeout=RPC_TIMEOUT_S)


def test_unknown_program_is_not_found(tcp: Stubs, domains: np.ndarray) -> None:
    unknown = hashlib.sha256(b"never registered").hexdigest()
    details = expect_error(
        lambda: solve(tcp, solve_request(unknown, SUDOKU, domains)), grpc.StatusCode.NOT_FOUND, "program_id"
    )
    assert unknown in details
    expect_error(
        lambda: tcp.solver.GetProgram(solver_pb2.GetProgramRequest(program_id=unknown), timeout=RPC_TIMEOUT_S),
        grpc.StatusCode.NOT_FOUND,
        "program_id",
    )


def test_released_program_is_not_found_and_registers_again(tcp: Stubs) -> None:
    program = sudoku_program(2)
    doms = np.full((1, 16), 0xF, dtype=np.uint64)
    pid = register(tcp.solver, program)
    released = tcp.solver.ReleaseProgram(solver_pb2.ReleaseProgramRequest(program_id=pid), timeout=RPC_TIMEOUT_S)
    assert released.released
    again = tcp.solver.ReleaseProgram(solver_pb2.ReleaseProgramRequest(program_id=pid), timeout=RPC_TIMEOUT_S)
    assert not again.released, "releasing twice must be idempotent and say the id was unknown"
    expect_error(lambda: solve(tcp, solve_request(pid, program, doms)), grpc.StatusCode.NOT_FOUND, "program_id")
    assert register(tcp.solver, program) == pid
    assert decode(solve(tcp, solve_request(pid, program, doms)), program, 1).status[0] == Status.SOLVED


def test_malformed_program_id(tcp: Stubs, domains: np.ndarray) -> None:
    expect_error(lambda: solve(tcp, solve_request("not-a-sha256", SUDOKU, domains)), INVALID, "program_id")


@pytest.mark.parametrize("delta", [-1, 1, 81])
def test_domains_of_the_wrong_byte_length(tcp: Stubs, pid: str, domains: np.ndarray, delta: int) -> None:
    req = solve_request(pid, SUDOKU, domains)
    req.domains = req.domains[:delta] if delta < 0 else req.domains + b"\x00" * delta
    details = expect_error(lambda: solve(tcp, req), INVALID, "domains")
    assert str(len(req.domains)) in details, "the message should say how many bytes came"


def test_bits_at_or_above_domain_size(tcp: Stubs, pid: str, domains: np.ndarray) -> None:
    bad = domains.copy()
    bad[2, 40] |= np.uint64(1 << 9)  # D = 9: bit 9 is out of range
    expect_error(lambda: solve(tcp, solve_request(pid, SUDOKU, bad)), INVALID, "domains[2, 40]", "domain_size")


@pytest.mark.parametrize("batch_size", [0, 3, 5])
def test_wrong_batch_size(tcp: Stubs, pid: str, domains: np.ndarray, batch_size: int) -> None:
    """batch_size 0 is invalid; 3 or 5 contradicts the 4 rows of domains sent."""
    req = solve_request(pid, SUDOKU, domains)
    req.batch_size = batch_size
    field = "batch_size" if batch_size == 0 else "domains"
    expect_error(lambda: solve(tcp, req), INVALID, field)


def test_batch_size_above_the_request_limit(tcp: Stubs, pid: str) -> None:
    """Default [solve] max_request_instances is 65536; the check must come before any allocation."""
    req = solver_pb2.SolveRequest(program_id=pid, batch_size=1 << 30, domains=b"")
    expect_error(lambda: solve(tcp, req), INVALID, "batch_size")


@pytest.mark.parametrize("delta", [-1, 1])
def test_priorities_of_the_wrong_size(tcp: Stubs, pid: str, domains: np.ndarray, delta: int) -> None:
    req = solve_request(pid, SUDOKU, domains, priorities=np.zeros((4, 81, 9), dtype=np.uint8))
    req.priorities = req.priorities[:delta] if delta < 0 else req.priorities + b"\x00"
    expect_error(lambda: solve(tcp, req), INVALID, "priorities", str(4 * 81 * 9))


@pytest.mark.parametrize("mode", [3, 99])
def test_unknown_mode(tcp: Stubs, pid: str, domains: np.ndarray, mode: int) -> None:
    req = solve_request(pid, SUDOKU, domains)
    req.mode = wire_mode(mode)
    expect_error(lambda: solve(tcp, req), INVALID, "mode")


def test_node_limit_out_of_range(tcp: Stubs, pid: str, domains: np.ndarray) -> None:
    req = solve_request(pid, SUDOKU, domains, node_limit=1 << 63)
    expect_error(lambda: solve(tcp, req), INVALID, "node_limit")


@pytest.mark.parametrize(
    ("program", "fragment"),
    [
        (isa_pb2.Program(num_vars=0, domain_size=4), "num_vars"),
        (isa_pb2.Program(num_vars=3, domain_size=65), "domain_size"),
        (
            isa_pb2.Program(
                num_vars=3, domain_size=4, constraints=[isa_pb2.Constraint(neq=isa_pb2.Neq(x=0, y=5, k=0))]
            ),
            "constraints[0] (NEQ): y = 5 is out of range [0, 3)",
        ),
        (
            isa_pb2.Program(
                num_vars=3,
                domain_size=4,
                constraints=[
                    isa_pb2.Constraint(alldiff=isa_pb2.AllDiff(vars=[0, 1])),
                    isa_pb2.Constraint(alldiff=isa_pb2.AllDiff(vars=[0, 1, 2], exact=True)),
                ],
            ),
            "constraints[1] (ALLDIFF): exact requires as many variables as values",
        ),
        (
            isa_pb2.Program(num_vars=3, domain_size=4, constraints=[isa_pb2.Constraint()]),
            "constraints[0]: no constraint kind set",
        ),
        (
            isa_pb2.Program(
                num_vars=2,
                domain_size=2,
                constraints=[isa_pb2.Constraint(table2=isa_pb2.Table2(x=0, y=1, rows=[1, 7]))],
            ),
            "constraints[0] (TABLE2): matrix row 1 has bits at or above domain_size 2",
        ),
    ],
    ids=["no-vars", "domain-too-big", "neq-out-of-range", "alldiff-not-exact", "empty-constraint", "table2-bits"],
)
def test_invalid_program_is_rejected_with_the_isa_message(tcp: Stubs, program: isa_pb2.Program, fragment: str) -> None:
    req = solver_pb2.RegisterProgramRequest(program=program)
    expect_error(lambda: tcp.solver.RegisterProgram(req, timeout=RPC_TIMEOUT_S), INVALID, fragment)


SERVICES = [
    (service.full_name, method.name, method.input_type.full_name)
    for module in (solver_pb2, admin_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]


@pytest.mark.parametrize(("service", "method", "message"), SERVICES, ids=[f"{s}.{m}" for s, m, _ in SERVICES])
def test_a_body_that_does_not_parse_is_invalid_argument_and_counted(
    tcp: Stubs, daemon: DaemonProcess, service: str, method: str, message: str
) -> None:
    """Before, grpc answered UNKNOWN ("Unexpected DecodeError") and the metrics never saw the call."""
    before = Scrape(daemon.metrics_url).value("fpgacsp_requests_total", method=method, code="INVALID_ARGUMENT")
    call = tcp.channel.unary_unary(f"/{service}/{method}", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)  # fmt: skip
    garbage = b"\xff\xff\xff\xff"  # a field tag whose varint never ends
    expect_error(lambda: call(garbage, timeout=RPC_TIMEOUT_S), INVALID, f"request: 4 bytes do not parse as {message}")
    counted = settled_value(
        daemon.metrics_url, "fpgacsp_requests_total", before + 1, method=method, code="INVALID_ARGUMENT"
    )
    assert counted == before + 1


@pytest.mark.parametrize(
    ("path", "kind", "message"),
    [
        ("/grpc.health.v1.Health/Check", "unary_unary", "grpc.health.v1.HealthCheckRequest"),
        ("/grpc.health.v1.Health/Watch", "unary_stream", "grpc.health.v1.HealthCheckRequest"),
        (
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            "stream_stream",
            "grpc.reflection.v1alpha.ServerReflectionRequest",
        ),
    ],
    ids=["Health.Check", "Health.Watch", "ServerReflectionInfo"],
)
def test_health_and_reflection_answer_a_body_that_does_not_parse_with_invalid_argument_too(
    tcp: Stubs, path: str, kind: str, message: str
) -> None:
    """The boundary is an interceptor, so it covers services that are not ours, streaming ones included."""
    call = getattr(tcp.channel, kind)(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    garbage = b"\xff\xff\xff\xff"
    if kind == "unary_unary":
        run = lambda: call(garbage, timeout=RPC_TIMEOUT_S)  # noqa: E731
    elif kind == "unary_stream":
        run = lambda: list(call(garbage, timeout=RPC_TIMEOUT_S))  # noqa: E731
    else:
        run = lambda: list(call(iter([garbage]), timeout=RPC_TIMEOUT_S))  # noqa: E731
    expect_error(run, INVALID, f"request: 4 bytes do not parse as {message}")


def test_the_daemon_still_answers_correctly_after_the_errors(tcp: Stubs, pid: str, engine: FastEngine) -> None:
    domains = sudoku_batch(SUDOKU_DIR / "forum_hardest_1106.csv", 8)
    got = decode(solve(tcp, solve_request(pid, SUDOKU, domains, Mode.SOLVE)), SUDOKU, 8)
    assert first_difference(got, local(engine, SUDOKU, domains, Mode.SOLVE)) == ""
