"""Bearer tokens and roles on a real fpgacspd, over TCP and its Unix socket, through the client library.

``--auth-tokens FILE`` (``TOKEN ROLE`` lines): no token or an unknown one is UNAUTHENTICATED, a ``solve`` token on
``Admin.Reset`` or ``Admin.SelfTest`` is PERMISSION_DENIED, health and reflection stay open, tokens never reach the
log, the file is re-read on SIGHUP without dropping a call in flight, and the Unix socket is 0660, not 0777.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from daemon_process import DaemonError, DaemonProcess
from fpgacsp import PermissionDeniedError, UnauthenticatedError, connect, connect_async
from fpgacsp.problems import sudoku_program
from fpgacsp_proto.v1 import solver_pb2, solver_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

SOLVER_TOKEN = "solve-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-fedcba9876543210"
PROGRAM = sudoku_program(2)
FULL = np.full((2, 16), 15, dtype=np.uint64)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text(f"# who may call\n{SOLVER_TOKEN} solve\n{ADMIN_TOKEN} admin   # the operator\n\n")
    return path


@pytest.fixture(scope="module")
def daemon(token_file: Path) -> Iterator[DaemonProcess]:
    with DaemonProcess(["--auth-tokens", str(token_file)], unix_socket=True) as d:
        yield d


def test_without_a_valid_token_every_call_is_unauthenticated_saying_why(daemon: DaemonProcess) -> None:
    with connect(daemon.address) as client, pytest.raises(UnauthenticatedError, match="no token: send 'authorization"):
        client.solve(PROGRAM, FULL)
    stranger = connect(daemon.address, token="not-a-token-of-this-daemon")
    with stranger, pytest.raises(UnauthenticatedError, match="auth: token rejected"):
        stranger.device_status()


def test_a_solve_token_solves_and_reads_status_but_may_not_reset(daemon: DaemonProcess) -> None:
    with connect(daemon.address, token=SOLVER_TOKEN) as client:
        assert client.solve(PROGRAM, FULL).status.tolist() == [1, 1]
        assert client.device_status().state.name == "READY"
        with pytest.raises(PermissionDeniedError, match=r"permission denied for Admin\.Reset: the token's role is "
                                                        r"solve, it needs admin"):  # fmt: skip
            client.reset()
        with pytest.raises(PermissionDeniedError, match=r"Admin\.SelfTest"):
            client.self_test()
    with connect(daemon.address, token=ADMIN_TOKEN) as client:
        assert client.reset().self_test_passed


def test_a_solve_stream_needs_a_token_too(daemon: DaemonProcess) -> None:
    async def solve(token: str) -> list[int]:
        async with connect_async(daemon.address, token=token, streaming=True, wait_for_daemon_s=0) as client:
            return (await client.solve(PROGRAM, FULL)).status.tolist()

    with grpc.insecure_channel(daemon.address) as channel:  # the stream itself, not the registration before it
        item = solver_pb2.SolveStreamRequest(tag=1, request=solver_pb2.SolveRequest(program_id="0" * 64))
        with pytest.raises(grpc.RpcError) as refused:
            list(solver_pb2_grpc.SolverStub(channel).SolveStream(iter([item]), timeout=30))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "no token" in (refused.value.details() or "")
    assert asyncio.run(solve(SOLVER_TOKEN)) == [1, 1]


def test_the_token_may_come_from_the_environment_and_works_over_the_unix_socket(
    daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FPGACSP_TOKEN", SOLVER_TOKEN)
    with connect(daemon.unix_address) as client:
        assert client.solve(PROGRAM, FULL).status.tolist() == [1, 1]
    mode = stat.S_IMODE(os.stat(daemon.unix_path).st_mode)
    assert mode == 0o660, f"the socket is {mode:o}"


def test_health_and_reflection_stay_open(daemon: DaemonProcess) -> None:
    with grpc.insecure_channel(daemon.address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        assert "fpgacsp.v1.Solver" in {s.name for s in answers[0].list_services_response.service}


def test_refusals_are_counted_and_tokens_never_logged(daemon: DaemonProcess) -> None:
    with connect(daemon.address, token=SOLVER_TOKEN) as client:
        counts = {(m.method, m.code): m.count for m in client.stats().requests}
    assert (
        counts.get(("RegisterProgram", "UNAUTHENTICATED"), 0) >= 1
        and counts.get(("Reset", "PERMISSION_DENIED"), 0) >= 1
    )
    text = daemon.log_text()
    assert SOLVER_TOKEN not in text and ADMIN_TOKEN not in text


def test_sighup_rereads_the_tokens_without_dropping_a_call_in_flight(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{SOLVER_TOKEN} solve\n")
    new_token = "rotated-token-00000000000000"
    with DaemonProcess(["--auth-tokens", str(tokens)]) as daemon:
        queens = connect(daemon.address, token=SOLVER_TOKEN)
        from fpgacsp.problems.coloring import coloring_program, load_dimacs

        colouring = coloring_program(load_dimacs(Path(__file__).parents[2] / "data/coloring/queen8_8.col"), 8)
        long = np.full((1, colouring.num_vars), 0xFF, dtype=np.uint64)
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(queens.solve, colouring, long, node_limit=60_000)  # about a second
            time.sleep(0.3)
            tokens.write_text(f"{new_token} admin\n")
            daemon.send_signal(signal.SIGHUP)
            reload = daemon.wait_for_event("signal")
            assert (reload["action"], reload["reloaded"]) == ("reload", ["auth_tokens"])
            assert in_flight.result(timeout=30).nodes.tolist() == [60_000]  # the call in flight was answered
        with pytest.raises(UnauthenticatedError, match="token rejected"):
            queens.device_status()  # the old token is gone
        queens.close()
        with connect(daemon.address, token=new_token) as client:
            assert client.reset().self_test_passed
        tokens.write_text("short admin\n")  # broken: the table in use stays
        daemon.send_signal(signal.SIGHUP)
        failed = daemon.wait_for_event("reload_failed")
        assert "at least 16 characters" in failed["error"] and f"{tokens}:1" in failed["error"]
        with connect(daemon.address, token=new_token) as client:
            assert client.device_status().state.name == "READY"
        assert daemon.terminate() == 0


def test_a_broken_token_file_fails_startup_naming_the_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{SOLVER_TOKEN} solve\n{ADMIN_TOKEN} root\n")
    daemon = DaemonProcess(["--auth-tokens", str(tokens)], ready_timeout_s=30)
    with pytest.raises(DaemonError):
        daemon.start()
    failed = daemon.wait_for_event("startup_failed")
    assert f"{tokens}:2: unknown role 'root' (known: solve, admin)" in failed["error"]
    assert daemon.wait() == 1
