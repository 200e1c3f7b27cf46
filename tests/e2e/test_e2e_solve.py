"""Solve through a real daemon equals the local engine bit for bit, over TCP and over the Unix socket.

Every field of every instance is compared (domains, status, nodes, solutions, sweeps): determinism is part
of the contract, so batching, the wire codec and the device thread must not change a single bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from fpgacsp.problems import check_sudoku_solution, sudoku_program
from fpgacsp_proto.bitset import singleton_values
from fpgacsp_proto.convert import program_to_proto
from fpgacsp_proto.encoding import program_id
from fpgacsp_proto.isa import Mode, Status
from fpgacsp_proto.v1 import solver_pb2
from fpgacspd.engine import FastEngine

from .wire import (
    RPC_TIMEOUT_S,
    SUDOKU_DIR,
    Stubs,
    decode,
    first_difference,
    local,
    random_priorities,
    register,
    solve_request,
    sudoku_batch,
)

SUDOKU = sudoku_program()
# Easy puzzles for the big batch (the shared machine has 2 cores), hard ones where search matters.
SUDOKU_FILES = {1: "forum_hardest_1106.csv", 64: "magictour_top1465.csv", 1024: "kaggle_10k.csv"}


@pytest.mark.parametrize("mode", [Mode.PROPAGATE, Mode.SOLVE], ids=["propagate", "solve"])
@pytest.mark.parametrize("batch", [1, 64, 1024])
def test_sudoku_equals_local_engine(stubs: Stubs, engine: FastEngine, batch: int, mode: Mode) -> None:
    domains = sudoku_batch(SUDOKU_DIR / SUDOKU_FILES[batch], batch)
    pid = register(stubs.solver, SUDOKU)
    resp = stubs.solver.Solve(solve_request(pid, SUDOKU, domains, mode), timeout=RPC_TIMEOUT_S)
    got = decode(resp, SUDOKU, batch)
    want = local(engine, SUDOKU, domains, mode)
    assert first_difference(got, want) == ""
    if mode == Mode.SOLVE:
        assert (got.status == Status.SOLVED).all()
        values = singleton_values(got.domains).reshape(batch, 9, 9)
        assert all(check_sudoku_solution(v) for v in values)


@pytest.mark.parametrize("mode", [Mode.PROPAGATE, Mode.SOLVE], ids=["propagate", "solve"])
def test_priorities_equal_local_engine(stubs: Stubs, engine: FastEngine, mode: Mode) -> None:
    """Priorities change the search order, so SOLVE node counts and solutions differ from the unprioritised run."""
    rng = np.random.default_rng(7)
    domains = sudoku_batch(SUDOKU_DIR / "serg_benchmark.csv", 64)  # puzzles with two or more solutions
    prios = random_priorities(rng, 64, SUDOKU)
    pid = register(stubs.solver, SUDOKU)
    resp = stubs.solver.Solve(solve_request(pid, SUDOKU, domains, mode, prios), timeout=RPC_TIMEOUT_S)
    got = decode(resp, SUDOKU, 64)
    assert first_difference(got, local(engine, SUDOKU, domains, mode, prios)) == ""
    if mode == Mode.SOLVE:
        plain = local(engine, SUDOKU, domains, mode)
        assert not np.array_equal(got.domains, plain.domains), "priorities had no effect: the test proves nothing"


def test_node_limit_and_max_solutions(tcp: Stubs, engine: FastEngine) -> None:
    domains = sudoku_batch(SUDOKU_DIR / "serg_benchmark.csv", 16)
    pid = register(tcp.solver, SUDOKU)
    two = decode(
        tcp.solver.Solve(solve_request(pid, SUDOKU, domains, max_solutions=2), timeout=RPC_TIMEOUT_S), SUDOKU, 16
    )
    assert first_difference(two, local(engine, SUDOKU, domains, max_solutions=2)) == ""
    assert (two.solutions == 2).any(), "serg_benchmark puzzles have two solutions"
    limited = decode(
        tcp.solver.Solve(solve_request(pid, SUDOKU, domains, node_limit=2), timeout=RPC_TIMEOUT_S), SUDOKU, 16
    )
    assert first_difference(limited, local(engine, SUDOKU, domains, node_limit=2)) == ""
    assert (limited.status == Status.LIMIT).any() and (limited.nodes <= 2).all()


def test_unspecified_mode_means_solve(tcp: Stubs, engine: FastEngine) -> None:
    domains = sudoku_batch(SUDOKU_DIR / "magictour_top1465.csv", 4)
    pid = register(tcp.solver, SUDOKU)
    req = solve_request(pid, SUDOKU, domains)
    req.ClearField("mode")
    got = decode(tcp.solver.Solve(req, timeout=RPC_TIMEOUT_S), SUDOKU, 4)
    assert first_difference(got, local(engine, SUDOKU, domains, Mode.SOLVE)) == ""


def test_timing_is_reported(tcp: Stubs) -> None:
    domains = sudoku_batch(SUDOKU_DIR / "magictour_top1465.csv", 8)
    pid = register(tcp.solver, SUDOKU)
    timing = tcp.solver.Solve(solve_request(pid, SUDOKU, domains), timeout=RPC_TIMEOUT_S).timing
    assert timing.device_batch_size >= 8
    assert timing.merged_requests >= 1
    assert timing.device_us > 0
    assert timing.total_us >= timing.queue_us + timing.device_us


def test_registration_is_content_addressed_and_idempotent(tcp: Stubs, unix: Stubs) -> None:
    program = sudoku_program(2)
    first = tcp.solver.RegisterProgram(
        solver_pb2.RegisterProgramRequest(program=program_to_proto(program)), timeout=RPC_TIMEOUT_S
    )
    again = unix.solver.RegisterProgram(
        solver_pb2.RegisterProgramRequest(program=program_to_proto(program)), timeout=RPC_TIMEOUT_S
    )
    assert first.program_id == again.program_id == program_id(program)
    assert not again.created
    assert again.info.num_vars == 16 and again.info.domain_size == 4
    assert again.info.num_constraints == len(program.constraints)

    got = tcp.solver.GetProgram(
        solver_pb2.GetProgramRequest(program_id=first.program_id, include_program=True), timeout=RPC_TIMEOUT_S
    )
    assert got.info.program_id == first.program_id
    assert got.program == program_to_proto(program)
    listed = tcp.solver.ListPrograms(solver_pb2.ListProgramsRequest(), timeout=RPC_TIMEOUT_S)
    assert first.program_id in {p.program_id for p in listed.programs}


def test_solve_counts_per_program(tcp: Stubs) -> None:
    pid = register(tcp.solver, SUDOKU)
    before = tcp.solver.GetProgram(solver_pb2.GetProgramRequest(program_id=pid), timeout=RPC_TIMEOUT_S).info.solves
    domains = sudoku_batch(SUDOKU_DIR / "kaggle_10k.csv", 2)
    for _ in range(3):
        tcp.solver.Solve(solve_request(pid, SUDOKU, domains), timeout=RPC_TIMEOUT_S)
    after = tcp.solver.GetProgram(solver_pb2.GetProgramRequest(program_id=pid), timeout=RPC_TIMEOUT_S).info
    assert after.solves == before + 3
    assert after.last_used_unix_ms >= after.registered_unix_ms > 0
