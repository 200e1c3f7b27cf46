"""A real fpgacspd on a faulty simulated card: concurrent clients still get exactly one right answer each.

The daemon runs the register path over the ``sim`` transport with periodic injected faults of every kind
(``--sim-faults``) and a short job timeout. Sixteen threads send Solve requests over gRPC at the same time; every
response must be OK and bit-identical to the local engine, the daemon's request counter must grow by exactly the
number sent, and its metrics endpoint must show the faults, resets and retries it recovered from. A card that
faults in every self-test must end FAILED, with health NOT_SERVING and Solve UNAVAILABLE, and exit cleanly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
from daemon_process import DaemonProcess
from fpgacsp.problems import queens_program, sudoku_program
from fpgacsp_proto.isa import Mode
from fpgacsp_proto.v1 import admin_pb2
from fpgacspd.engine import FastEngine
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .wire import (
    RPC_TIMEOUT_S,
    SUDOKU_DIR,
    Scrape,
    connect,
    decode,
    expect_error,
    first_difference,
    local,
    register,
    solve_request,
    sudoku_batch,
)

FAULTS = "hang/29,error/13,corrupt/17,drop_irq/5,slow/7,wedge@61"
CLIENTS = 16
REQUESTS = 12


def test_every_request_gets_one_right_answer_while_the_card_faults() -> None:
    args = ["--sim-faults", FAULTS, "--sim-slow-us", "30000", "--job-timeout-ms", "400", "--irq-poll-ms", "20",
            "--reset-timeout-ms", "300", "--device-max-retries", "4", "--device-threads", "1"]  # fmt: skip
    engine = FastEngine(threads=1)
    sudoku, queens = sudoku_program(3), queens_program(8)
    puzzles = sudoku_batch(SUDOKU_DIR / "magictour_top1465.csv", 64)
    errors: list[str] = []
    lock = threading.Lock()
    with DaemonProcess(args) as daemon:
        stubs = connect(daemon.address)
        ids = {"sudoku": register(stubs.solver, sudoku), "queens": register(stubs.solver, queens)}
        before = Scrape(daemon.metrics_url).value("fpgacsp_requests_total", method="Solve")

        def client(k: int) -> None:
            rng = np.random.default_rng(k)
            for i in range(REQUESTS):
                if (k + i) % 2:
                    rows = puzzles[rng.integers(0, len(puzzles), int(rng.integers(1, 9)))]
                    name, program, mode = "sudoku", sudoku, Mode.SOLVE
                else:
                    rows = rng.integers(1, 256, (int(rng.integers(1, 5)), 8)).astype(np.uint64)
                    name, program, mode = "queens", queens, Mode.PROPAGATE
                resp = stubs.solver.Solve(solve_request(ids[name], program, rows, mode), timeout=RPC_TIMEOUT_S)
                diff = first_difference(decode(resp, program, len(rows)), local(engine, program, rows, mode))
                if diff:
                    with lock:
                        errors.append(f"client {k} request {i} ({name}): {diff}")

        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(client, range(CLIENTS)))
        assert not errors, errors[:5]
        scrape = Scrape(daemon.metrics_url)
        answered = scrape.value("fpgacsp_requests_total", method="Solve", code="OK") - before
        assert answered == CLIENTS * REQUESTS
        assert scrape.value("fpgacsp_requests_total", method="Solve") - before == CLIENTS * REQUESTS
        faults = scrape.by_label("fpgacsp_device_faults_total", "kind")
        for kind in ("timeout", "device_error", "bad_completion", "lost_interrupt"):
            assert faults[kind] > 0, (kind, faults)
        resets = scrape.by_label("fpgacsp_device_resets_total", "kind")
        assert resets["soft"] > 0 and resets["function"] == 1, resets  # the wedge needed a function reset
        assert scrape.value("fpgacsp_device_retries_total") > 0
        status = stubs.admin.GetDeviceStatus(admin_pb2.GetDeviceStatusRequest(), timeout=RPC_TIMEOUT_S)
        assert status.backend == "sim" and status.state == admin_pb2.DEVICE_STATE_READY
        assert status.faults == sum(faults.values()) and status.resets == sum(resets.values())
        assert daemon.terminate() == 0


def test_a_card_that_faults_in_every_self_test_goes_failed_and_the_daemon_stays_up() -> None:
    args = ["--sim-faults", "error/1", "--device-max-retries", "1", "--device-threads", "1"]
    with DaemonProcess(args, until="self_test") as daemon:
        assert daemon.events_named("self_test")[0]["passed"] is False
        stubs = connect(daemon.address)
        program = sudoku_program(2)
        pid = register(stubs.solver, program)
        rows = np.full((1, 16), 15, dtype=np.uint64)
        # every startup self-test case met an error in each recovery: the device never got READY
        health = health_pb2_grpc.HealthStub(stubs.channel)
        check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_S)
        assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
        expect_error(lambda: stubs.solver.Solve(solve_request(pid, program, rows), timeout=RPC_TIMEOUT_S),
                     grpc.StatusCode.UNAVAILABLE)  # fmt: skip
        status = stubs.admin.GetDeviceStatus(admin_pb2.GetDeviceStatusRequest(), timeout=RPC_TIMEOUT_S)
        assert status.state == admin_pb2.DEVICE_STATE_FAILED
        assert daemon.terminate() == 0


def test_the_vfio_backend_without_vfio_fails_startup_with_the_fix() -> None:
    """On a host without VFIO (this one: no /dev/vfio), the daemon exits 1 and says what to do."""
    cmd = [sys.executable, "-m", "fpgacspd", "--listen", "127.0.0.1:0", "--device-backend", "vfio",
           "--device", "0000:01:00.0", "--log-format", "json"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    failed = [json.loads(line) for line in done.stderr.splitlines() if '"startup_failed"' in line]
    assert failed and "vfio 0000:01:00.0" in failed[0]["error"], done.stderr
    assert any(hint in failed[0]["error"] for hint in ("modprobe vfio-pci", "IOMMU", "bound to vfio-pci"))


def test_sigterm_while_a_job_hangs_still_answers_every_request() -> None:
    """The drain waits for the hung batch's recovery; its requests and those queued behind it get OK."""
    # the startup self-test runs 5 RUN jobs; the 6th, the first batch, hangs until the 1 s job timeout
    args = ["--sim-faults", "hang@6", "--job-timeout-ms", "1000", "--device-threads", "1", "--max-batch", "4"]
    engine = FastEngine(threads=1)
    program = sudoku_program(3)
    puzzles = sudoku_batch(SUDOKU_DIR / "magictour_top1465.csv", 16)
    with DaemonProcess(args) as daemon:
        stubs = connect(daemon.address)
        pid = register(stubs.solver, program)
        with ThreadPoolExecutor(4) as pool:
            futures = [
                pool.submit(stubs.solver.Solve, solve_request(pid, program, puzzles[i : i + 4]), timeout=RPC_TIMEOUT_S)
                for i in range(0, 16, 4)
            ]
            time.sleep(0.3)  # the first batch is on the card, hung
            daemon.send_signal()
            answers = [f.result() for f in futures]
        assert [e["kind"] for e in daemon.events_named("device_fault")] == ["timeout"]
        assert daemon.events_named("signal")[0]["ts"] < daemon.events_named("device_fault")[0]["ts"]
        for i, resp in zip(range(0, 16, 4), answers, strict=True):
            want = local(engine, program, puzzles[i : i + 4])
            assert not first_difference(decode(resp, program, 4), want)
        assert daemon.wait() == 0
        stopped = daemon.events_named("stopped")[-1]
        assert stopped["submitted"] == stopped["answered"] == 4


def test_a_device_that_failed_its_startup_self_test_is_recovered_with_backoff_and_then_serves() -> None:
    """The first RUN job of the startup self-test errors and no retry is allowed: the device starts FAILED.
    The daemon retries the recovery itself after the backoff; once the self-test passes it is READY, health
    SERVING, systemd hears READY=1 (the ``ready`` line) and Solve is answered."""
    args = ["--sim-faults", "error@1", "--device-max-retries", "0", "--recovery-backoff-ms", "300"]
    with DaemonProcess(args, until="self_test") as daemon:
        assert daemon.events_named("self_test")[0]["passed"] is False
        stubs = connect(daemon.address)
        program = sudoku_program(2)
        pid = register(stubs.solver, program)
        scheduled = daemon.wait_for_event("device_recovery_scheduled")
        assert scheduled["in_s"] == 0.3
        recovered = daemon.wait_for_event("device_recovery")
        assert recovered["passed"] is True and recovered["attempt"] == 1
        daemon.wait_for_event("ready")
        health = health_pb2_grpc.HealthStub(stubs.channel)
        check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_S)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        resp = stubs.solver.Solve(solve_request(pid, program, np.full((1, 16), 15, np.uint64)), timeout=RPC_TIMEOUT_S)
        assert decode(resp, program, 1).status.tolist() == [1]
        scrape = Scrape(daemon.metrics_url)
        assert scrape.value("fpgacsp_device_recoveries_total", outcome="passed") == 1
        assert scrape.value("fpgacsp_device_recovery_backoff_seconds") == 0
        assert daemon.terminate() == 0


def test_a_device_that_keeps_failing_is_retried_with_doubling_backoff_while_the_daemon_stays_up() -> None:
    args = ["--sim-faults", "error/1", "--device-max-retries", "0", "--recovery-backoff-ms", "100",
            "--recovery-backoff-max-ms", "400", "--device-threads", "1"]  # fmt: skip
    with DaemonProcess(args, until="self_test") as daemon:
        deadline = time.monotonic() + 20
        while len(daemon.events_named("device_recovery_scheduled")) < 5:
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.05)
        waits = [e["in_s"] for e in daemon.events_named("device_recovery_scheduled")[:5]]
        assert waits == [0.1, 0.2, 0.4, 0.4, 0.4]
        assert all(e["passed"] is False for e in daemon.events_named("device_recovery"))
        stubs = connect(daemon.address)
        status = stubs.admin.GetDeviceStatus(admin_pb2.GetDeviceStatusRequest(), timeout=RPC_TIMEOUT_S)
        assert status.state == admin_pb2.DEVICE_STATE_FAILED
        scrape = Scrape(daemon.metrics_url)
        assert scrape.value("fpgacsp_device_recoveries_total", outcome="failed") >= 4
        assert scrape.value("fpgacsp_device_recovery_backoff_seconds") == 0.4
        assert daemon.terminate() == 0
