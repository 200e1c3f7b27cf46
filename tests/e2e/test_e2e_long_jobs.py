"""Long jobs on a real fpgacspd: one request must not take the device, the status or the stop with it.

The program is the issue's: 8-colouring of queen8_8 (DIMACS), a search of about 70,000 nodes per second on the
simulated card that does not finish for a very long time. A request may not ask for more nodes than the
daemon's ceiling; a job past every caller's deadline is aborted on the card (no reset); a search that runs
longer than the job timeout is slow, not hung, because its node counter climbs; status answers at once
while the device is busy; and a SIGTERM during a long search still stops the daemon within its grace.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from daemon_process import DaemonProcess
from fpgacsp.problems import sudoku_program
from fpgacsp.problems.coloring import coloring_program, load_dimacs
from fpgacsp_proto.isa import Program, Status
from fpgacsp_proto.v1 import admin_pb2

from .wire import (
    COLORING_DIR,
    RPC_TIMEOUT_S,
    SUDOKU_DIR,
    Scrape,
    connect,
    decode,
    expect_error,
    register,
    solve_request,
    sudoku_batch,
)

COLOURS = 8


def queen8_8() -> Program:
    return coloring_program(load_dimacs(COLORING_DIR / "queen8_8.col"), COLOURS)


def full(program: Program) -> np.ndarray:
    return np.full((1, program.num_vars), (1 << program.domain_size) - 1, dtype=np.uint64)


def status(stubs: object) -> tuple[admin_pb2.DeviceStatus, float]:
    start = time.monotonic()
    got = stubs.admin.GetDeviceStatus(admin_pb2.GetDeviceStatusRequest(), timeout=RPC_TIMEOUT_S)  # type: ignore[attr-defined]
    return got, time.monotonic() - start


@pytest.fixture(scope="module")
def daemon() -> object:
    # a short job timeout: a long search must not be taken for a hang (nodes climb, no instance finishes)
    with DaemonProcess(["--job-timeout-ms", "400", "--device-threads", "1"]) as d:
        yield d


def test_a_node_limit_above_the_daemons_ceiling_is_invalid_argument_at_once(daemon: DaemonProcess) -> None:
    stubs = connect(daemon.address)
    program = queen8_8()
    pid = register(stubs.solver, program)
    start = time.monotonic()
    expect_error(
        lambda: stubs.solver.Solve(solve_request(pid, program, full(program), node_limit=2**63 - 1), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT, "node_limit: 9223372036854775807 exceeds", "solve.max_node_limit",
    )  # fmt: skip
    assert time.monotonic() - start < 1.0
    assert status(stubs)[0].state == admin_pb2.DEVICE_STATE_READY


def test_a_job_past_its_callers_deadline_is_aborted_and_the_device_serves_on(daemon: DaemonProcess) -> None:
    stubs = connect(daemon.address)
    program = queen8_8()
    pid = register(stubs.solver, program)
    before = status(stubs)[0]
    start = time.monotonic()
    expect_error(
        lambda: stubs.solver.Solve(solve_request(pid, program, full(program), node_limit=100_000_000), timeout=1.0),
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )
    assert time.monotonic() - start < 1.5
    # the card aborted the job: the next request runs at once, with no reset and no fault
    sudoku = sudoku_program(3)
    spid = register(stubs.solver, sudoku)
    start = time.monotonic()
    resp = stubs.solver.Solve(solve_request(spid, sudoku, sudoku_batch(SUDOKU_DIR / "kaggle_10k.csv", 4)), timeout=5)
    assert time.monotonic() - start < 1.0
    assert set(decode(resp, sudoku, 4).status.tolist()) == {int(Status.SOLVED)}
    after = status(stubs)[0]
    assert after.state == admin_pb2.DEVICE_STATE_READY
    assert (after.resets, after.faults) == (before.resets, before.faults)
    assert daemon.wait_for_event("batch_aborted")["reason"] == "deadline"
    aborted = Scrape(daemon.metrics_url).value("fpgacsp_device_aborted_jobs_total")
    assert aborted >= 1


def test_a_search_longer_than_the_job_timeout_is_slow_not_hung_and_status_never_waits(
    daemon: DaemonProcess,
) -> None:
    stubs = connect(daemon.address)
    program = queen8_8()
    pid = register(stubs.solver, program)
    before = status(stubs)[0]
    with ThreadPoolExecutor(1) as pool:
        # 0.9-3 s of search (the load on the machine decides): at least twice the 400 ms job timeout, without a
        # single instance finishing; sampled every 50 ms, so even the fast end gives the samples asserted below
        call = pool.submit(
            stubs.solver.Solve, solve_request(pid, program, full(program), node_limit=150_000), timeout=RPC_TIMEOUT_S
        )
        time.sleep(0.3)
        samples = []
        while not call.done():
            samples.append(status(stubs))
            time.sleep(0.05)
        resp = call.result()
    result = decode(resp, program, 1)
    assert result.status.tolist() == [int(Status.LIMIT)] and result.nodes.tolist() == [150_000]
    busy = [(s, dt) for s, dt in samples if s.busy_ms > 0]
    assert len(busy) >= 5, samples
    assert max(dt for _, dt in samples) < 0.1, [round(dt, 3) for _, dt in samples]  # status never waits on the job
    nodes = [s.card_nodes for s, _ in busy]
    assert nodes == sorted(nodes) and nodes[-1] > nodes[0]  # the counter that tells slow from hung climbs
    after = status(stubs)[0]
    assert (after.resets, after.faults) == (before.resets, before.faults)  # not taken for a hang


def test_sigterm_during_a_long_search_aborts_it_and_stops_within_the_grace() -> None:
    args = ["--device-threads", "1", "--shutdown-grace-s", "1"]
    with DaemonProcess(args) as daemon:
        stubs = connect(daemon.address)
        program = queen8_8()
        pid = register(stubs.solver, program)
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(
                stubs.solver.Solve, solve_request(pid, program, full(program), node_limit=100_000_000),
                timeout=RPC_TIMEOUT_S,
            )  # fmt: skip
            time.sleep(0.5)
            start = time.monotonic()
            daemon.send_signal()
            expect_error(call.result, grpc.StatusCode.UNAVAILABLE)
            assert daemon.wait(timeout_s=10) == 0
        assert time.monotonic() - start < 4.0
        stopped = daemon.events_named("stopped")[-1]
        assert stopped["forced"] is True and stopped["submitted"] == stopped["answered"] == 1


def test_an_operators_reset_during_a_long_search_aborts_it_and_answers_at_once(daemon: DaemonProcess) -> None:
    """Admin.Reset used to queue behind the search on the device thread and time out (the issue's 40 s)."""
    stubs = connect(daemon.address)
    program = queen8_8()
    pid = register(stubs.solver, program)
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(
            stubs.solver.Solve, solve_request(pid, program, full(program), node_limit=100_000_000),
            timeout=RPC_TIMEOUT_S,
        )  # fmt: skip
        time.sleep(0.5)
        start = time.monotonic()
        reset = stubs.admin.Reset(admin_pb2.ResetRequest(), timeout=RPC_TIMEOUT_S)
        took = time.monotonic() - start
        expect_error(call.result, grpc.StatusCode.UNAVAILABLE, "aborted for an operator's reset")
    assert reset.self_test_passed and took < 2.0, f"the reset took {took:.2f} s"
    assert status(stubs)[0].state == admin_pb2.DEVICE_STATE_READY
    resp = stubs.solver.Solve(solve_request(pid, program, full(program), node_limit=1_000), timeout=RPC_TIMEOUT_S)
    assert decode(resp, program, 1).nodes.tolist() == [1_000]
