"""Limits and drops on a daemon configured from all three sources: a TOML file, FPGACSPD_* env and flags.

The daemon batches with a long delay (2 s) and a tiny queue (2 requests), so a request visibly waits in the
queue: a flood overflows it, a short deadline expires in it, a cancel reaches it before the device does.
The registry is small, so oversized programs and LRU eviction are reachable with tiny programs. The same
daemon proves the configuration precedence end to end (flags > env > file > defaults).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest
from daemon_process import DaemonProcess
from fpgacsp.problems import queens_program, sudoku_program
from fpgacsp_proto.bitset import full_domains
from fpgacsp_proto.convert import program_to_proto
from fpgacsp_proto.isa import Neq, Program, Status, Table2, make_program
from fpgacsp_proto.v1 import admin_pb2, solver_pb2

from .wire import RPC_TIMEOUT_S, Scrape, Stubs, connect, decode, expect_error, register, solve_request

DELAY_S = 2.0
CONFIG = """
[batching]
max_batch = 512           # file only: must show in GetDeviceStatus
max_delay_us = 5          # overridden by FPGACSPD_MAX_DELAY_US
max_queue = 99            # overridden by FPGACSPD_MAX_QUEUE, itself overridden by --max-queue

[registry]
max_programs = 3
max_vars = 100
max_constraints = 40
max_program_bytes = 4000
"""
ENV = {"FPGACSPD_MAX_DELAY_US": str(int(DELAY_S * 1e6)), "FPGACSPD_MAX_QUEUE": "50"}
ENV["FPGACSPD_MAX_REQUEST_INSTANCES"] = "100"
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def tiny(k: int) -> Program:
    """Distinct small programs (different ids) that fit every limit."""
    return make_program(3, 3, [Neq(0, 1, k)])


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    config = tmp_path_factory.mktemp("limits") / "fpgacspd.toml"
    config.write_text(CONFIG, encoding="utf-8")
    with DaemonProcess(["--config", str(config), "--max-queue", "2"], env=ENV) as d:
        yield d


@pytest.fixture(scope="module")
def stubs(slow: DaemonProcess) -> Iterator[Stubs]:
    s = connect(slow.address)
    yield s
    s.channel.close()


@pytest.fixture
def empty_registry(stubs: Stubs) -> Iterator[None]:
    release_all(stubs)
    yield
    release_all(stubs)


def release_all(stubs: Stubs) -> None:
    for info in stubs.solver.ListPrograms(solver_pb2.ListProgramsRequest(), timeout=RPC_TIMEOUT_S).programs:
        stubs.solver.ReleaseProgram(solver_pb2.ReleaseProgramRequest(program_id=info.program_id), timeout=RPC_TIMEOUT_S)


def stats(stubs: Stubs) -> admin_pb2.Stats:
    return stubs.admin.GetStats(admin_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_S)


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_configuration_precedence(stubs: Stubs) -> None:
    status = stubs.admin.GetDeviceStatus(admin_pb2.GetDeviceStatusRequest(), timeout=RPC_TIMEOUT_S)
    assert status.max_batch == 512, "[batching] max_batch from the file"
    assert status.max_delay_us == int(DELAY_S * 1e6), "FPGACSPD_MAX_DELAY_US must override the file"


@pytest.mark.parametrize(
    ("program", "fragment"),
    [
        (make_program(101, 2, []), "max_vars"),
        (queens_program(8), "max_constraints"),  # 57 constraints
        (make_program(2, 64, [Table2(0, 1, tuple([(1 << 64) - 1] * 64))] * 8), "max_program_bytes"),  # ~4 KiB
    ],
    ids=["vars", "constraints", "bytes"],
)
def test_oversized_program_is_resource_exhausted(stubs: Stubs, program: Program, fragment: str) -> None:
    req = solver_pb2.RegisterProgramRequest(program=program_to_proto(program))
    expect_error(lambda: stubs.solver.RegisterProgram(req, timeout=RPC_TIMEOUT_S), EXHAUSTED, fragment)


def test_batch_size_above_max_request_instances(stubs: Stubs) -> None:
    program = tiny(0)
    pid = register(stubs.solver, program)
    req = solve_request(pid, program, full_domains(101, 3, 3))
    expect_error(lambda: stubs.solver.Solve(req, timeout=RPC_TIMEOUT_S), grpc.StatusCode.INVALID_ARGUMENT, "batch_size")


def test_lru_evicts_the_least_recently_used_unpinned_program(stubs: Stubs, empty_registry: None) -> None:
    a, b, c, d = (tiny(k) for k in range(4))
    ids = [register(stubs.solver, p) for p in (a, b, c)]
    # Solving A makes it recently used, so B is now the least recently used.
    stubs.solver.Solve(solve_request(ids[0], a, full_domains(1, 3, 3)), timeout=RPC_TIMEOUT_S * 2)
    pid_d = register(stubs.solver, d)
    listed = {p.program_id for p in stubs.solver.ListPrograms(solver_pb2.ListProgramsRequest()).programs}
    assert listed == {ids[0], ids[2], pid_d}
    expect_error(
        lambda: stubs.solver.GetProgram(solver_pb2.GetProgramRequest(program_id=ids[1]), timeout=RPC_TIMEOUT_S),
        grpc.StatusCode.NOT_FOUND,
        "program_id",
    )


def test_registry_full_of_pinned_programs(stubs: Stubs, empty_registry: None) -> None:
    for k in range(3):
        register(stubs.solver, tiny(k), pin=True)
    req = solver_pb2.RegisterProgramRequest(program=program_to_proto(tiny(9)))
    expect_error(lambda: stubs.solver.RegisterProgram(req, timeout=RPC_TIMEOUT_S), EXHAUSTED, "pinned")
    # Registering an already-present program needs no room.
    assert register(stubs.solver, tiny(1), pin=True)


def test_full_queue_is_rejected_at_once(stubs: Stubs) -> None:
    """max_queue = 2 (the flag beat env and file): of 10 simultaneous requests 8 are refused immediately."""
    program = tiny(0)
    pid = register(stubs.solver, program)
    before = stats(stubs)
    doms = full_domains(1, 3, 3)
    done_at: list[float] = [0.0] * 10
    start = time.monotonic()
    futures = []
    for i in range(10):
        fut = stubs.solver.Solve.future(solve_request(pid, program, doms), timeout=RPC_TIMEOUT_S)
        fut.add_done_callback(lambda _f, i=i: done_at.__setitem__(i, time.monotonic() - start))
        futures.append(fut)
    outcomes = []
    for fut in futures:
        try:
            resp = fut.result()
            outcomes.append("OK")
            assert decode(resp, program, 1).status[0] == Status.SOLVED
        except grpc.RpcError as err:
            outcomes.append(err.code().name)
            assert err.code() == EXHAUSTED, err.details()
            assert "queue" in err.details() and "max_queue" in err.details()
    wait_for(lambda: all(done_at), "every done callback")
    ok = [t for t, o in zip(done_at, outcomes, strict=True) if o == "OK"]
    refused = [t for t, o in zip(done_at, outcomes, strict=True) if o != "OK"]
    assert len(ok) == 2 and len(refused) == 8, outcomes
    assert max(refused) < DELAY_S / 2, f"refusals took {max(refused):.3f} s: they must not wait for the batch"
    assert min(ok) >= DELAY_S * 0.9, "the two queued requests should have waited for companions"
    assert stats(stubs).rejected_queue_full - before.rejected_queue_full == 8


def test_expired_and_cancelled_requests_never_reach_the_device(stubs: Stubs, slow: DaemonProcess) -> None:
    program = sudoku_program(2)
    pid = register(stubs.solver, program)
    doms = np.full((3, 16), 0xF, dtype=np.uint64)
    before = stats(stubs)
    scraped = Scrape(slow.metrics_url)
    sent = time.monotonic()
    expiring = stubs.solver.Solve.future(solve_request(pid, program, doms), timeout=0.3)
    cancelled = stubs.solver.Solve.future(solve_request(pid, program, doms), timeout=RPC_TIMEOUT_S)
    time.sleep(0.3)
    assert cancelled.cancel(), "the call should still have been waiting in the queue"
    with pytest.raises(grpc.RpcError) as info:
        expiring.result()
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: stats(stubs).dropped_cancelled > before.dropped_cancelled, "dropped_cancelled to count")
    wait_for(lambda: stats(stubs).dropped_expired > before.dropped_expired, "dropped_expired to count")
    # Past the moment the batch would have gone to the device: nothing ran.
    time.sleep(max(0.0, sent + DELAY_S * 1.25 - time.monotonic()))
    after = stats(stubs)
    assert after.dropped_expired - before.dropped_expired == 1
    assert after.dropped_cancelled - before.dropped_cancelled == 1
    assert after.batches == before.batches and after.instances == before.instances
    assert after.queue_depth == 0
    metrics = Scrape(slow.metrics_url)
    for reason in ("expired", "cancelled"):
        name = "fpgacsp_dropped_total"
        grown = metrics.value(name, reason=reason) - scraped.value(name, reason=reason)
        assert grown == 1, f"fpgacsp_dropped_total{{reason={reason!r}}} grew by {grown}"
    assert metrics.value("fpgacsp_batch_instances_sum") == scraped.value("fpgacsp_batch_instances_sum")


def test_daemon_still_serves_after_the_drops(stubs: Stubs) -> None:
    program = tiny(0)
    pid = register(stubs.solver, program)
    resp = stubs.solver.Solve(solve_request(pid, program, full_domains(2, 3, 3)), timeout=RPC_TIMEOUT_S)
    assert (decode(resp, program, 2).status == Status.SOLVED).all()
    assert resp.timing.queue_us >= DELAY_S * 1e6 * 0.9, "a lone request waits max_delay_us for companions"
