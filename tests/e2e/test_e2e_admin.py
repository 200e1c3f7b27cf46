"""The admin plane on the real daemon: device status, self-test, reset (then solving still works), stats."""

from __future__ import annotations

import grpc
import numpy as np
from fpgacsp.problems import sudoku_program
from fpgacsp_proto.isa import Mode
from fpgacsp_proto.v1 import admin_pb2, solver_pb2
from fpgacspd.engine import FastEngine

from .wire import (
    RPC_TIMEOUT_S,
    SUDOKU_DIR,
    Stubs,
    decode,
    expect_error,
    first_difference,
    local,
    register,
    solve_request,
    sudoku_batch,
)

SUDOKU = sudoku_program()


def device_status(stubs: Stubs) -> admin_pb2.DeviceStatus:
    return stubs.admin.GetDeviceStatus(admin_pb2.GetDeviceStatusRequest(), timeout=RPC_TIMEOUT_S)


def stats(stubs: Stubs) -> admin_pb2.Stats:
    return stubs.admin.GetStats(admin_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)


def counts(s: admin_pb2.Stats) -> dict[tuple[str, str], int]:
    return {(m.method, m.code): int(m.count) for m in s.requests}


def test_device_status(tcp: Stubs) -> None:
    status = device_status(tcp)
    assert status.backend == "sim"
    assert status.state == admin_pb2.DEVICE_STATE_READY
    assert status.description and status.daemon_version
    assert status.max_batch == 1024 and status.max_delay_us == 0, "the defaults of the contract"
    assert status.queue_depth == 0
    listed = tcp.solver.ListPrograms(solver_pb2.ListProgramsRequest(), timeout=RPC_TIMEOUT_S).programs
    assert status.programs_loaded == len(listed)


def test_device_counters_grow_with_work(tcp: Stubs) -> None:
    pid = register(tcp.solver, SUDOKU)
    domains = sudoku_batch(SUDOKU_DIR / "kaggle_10k.csv", 16)
    before = device_status(tcp)
    resp = tcp.solver.Solve(solve_request(pid, SUDOKU, domains), timeout=RPC_TIMEOUT_S)
    after = device_status(tcp)
    got = decode(resp, SUDOKU, 16)
    assert after.batches == before.batches + 1
    assert after.instances == before.instances + 16
    assert after.nodes == before.nodes + int(got.nodes.sum())
    assert after.sweeps == before.sweeps + int(got.sweeps.sum())


def test_self_test(tcp: Stubs) -> None:
    resp = tcp.admin.SelfTest(admin_pb2.SelfTestRequest(), timeout=RPC_TIMEOUT_S)
    assert resp.passed
    assert len(resp.cases) >= 2 and all(c.passed and c.name for c in resp.cases)
    assert resp.duration_us > 0


def test_reset_then_solving_still_works(tcp: Stubs, engine: FastEngine) -> None:
    pid = register(tcp.solver, SUDOKU)
    domains = sudoku_batch(SUDOKU_DIR / "magictour_top1465.csv", 32)
    before = device_status(tcp)
    # Work in flight while the reset happens: it waits for the device and is not lost.
    pending = [
        tcp.solver.Solve.future(solve_request(pid, SUDOKU, domains[i : i + 4]), timeout=RPC_TIMEOUT_S)
        for i in range(0, 32, 4)
    ]
    reset = tcp.admin.Reset(admin_pb2.ResetRequest(), timeout=RPC_TIMEOUT_S)
    assert reset.self_test_passed and reset.duration_us > 0
    for i, fut in zip(range(0, 32, 4), pending, strict=True):
        got = decode(fut.result(timeout=RPC_TIMEOUT_S), SUDOKU, 4)
        assert first_difference(got, local(engine, SUDOKU, domains[i : i + 4])) == ""
    after = device_status(tcp)
    assert after.resets == before.resets + 1
    assert after.state == admin_pb2.DEVICE_STATE_READY
    # Programs survive a device reset (the registry is the daemon's, not the device's).
    resp = tcp.solver.Solve(solve_request(pid, SUDOKU, domains, Mode.PROPAGATE), timeout=RPC_TIMEOUT_S)
    got = decode(resp, SUDOKU, 32)
    assert first_difference(got, local(engine, SUDOKU, domains, Mode.PROPAGATE)) == ""


def test_stats_count_requests_by_method_and_code(tcp: Stubs) -> None:
    pid = register(tcp.solver, SUDOKU)
    domains = sudoku_batch(SUDOKU_DIR / "kaggle_10k.csv", 8)
    before = stats(tcp)
    for i in range(3):
        tcp.solver.Solve(solve_request(pid, SUDOKU, domains[: i + 1]), timeout=RPC_TIMEOUT_S)
    bad = solve_request(pid, SUDOKU, domains)
    bad.batch_size = 0
    expect_error(lambda: tcp.solver.Solve(bad, timeout=RPC_TIMEOUT_S), grpc.StatusCode.INVALID_ARGUMENT, "batch_size")
    after = stats(tcp)
    c0, c1 = counts(before), counts(after)
    assert c1[("Solve", "OK")] - c0.get(("Solve", "OK"), 0) == 3
    assert c1[("Solve", "INVALID_ARGUMENT")] - c0.get(("Solve", "INVALID_ARGUMENT"), 0) == 1
    assert c1[("RegisterProgram", "OK")] >= 1
    assert after.batches - before.batches == 3, "three sequential requests: three device batches"
    assert after.instances - before.instances == 1 + 2 + 3
    assert after.mean_batch_size > 0 and after.mean_merged_requests >= 1
    assert after.queue_depth == 0
    assert after.programs_loaded >= 1
    assert np.isclose(after.mean_batch_size * after.batches, after.instances)
