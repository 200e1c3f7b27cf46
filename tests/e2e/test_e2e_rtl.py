"""A real ``fpgacspd --device-backend rtl`` answers Solve bit-identical to a daemon on the simulated card.

The daemon is started as an operator would start it, with the card's RTL (fcsp_card, in Verilator behind the
``rtl`` transport) under the unchanged driver: the self-test at startup runs on the RTL, then Sudoku batches in both
modes (with and without priorities, the batch larger than the card's CAP_JOB so the driver splits it) are solved
over gRPC by it and by the shared ``sim`` daemon, and every field of every instance must be equal, and equal to the
local engine. Admin status names the transport that served them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from daemon_process import DaemonProcess
from fpgacsp.problems import sudoku_program
from fpgacsp_proto.isa import Mode
from fpgacsp_proto.v1 import admin_pb2
from fpgacspd.device.rtl import RtlTransport
from fpgacspd.engine import FastEngine

from .wire import (
    RPC_TIMEOUT_S,
    SUDOKU_DIR,
    Stubs,
    connect,
    decode,
    first_difference,
    local,
    random_priorities,
    register,
    solve_request,
    sudoku_batch,
)

SUDOKU = sudoku_program()
BATCH = 20  # over two RUN jobs on the RTL card (CAP_JOB 16)


@pytest.fixture(scope="module")
def rtl() -> Iterator[Stubs]:
    RtlTransport().close()  # builds the card on a fresh checkout (minutes), outside the daemon's ready timeout
    with DaemonProcess(["--device-backend", "rtl", "--job-timeout-ms", "60000", "--reset-timeout-ms", "10000"]) as d:
        stubs = connect(d.address)
        yield stubs
        stubs.channel.close()
        assert d.alive(), f"the rtl daemon died during the tests\n{d.log_text()}"


@pytest.mark.parametrize("mode", [Mode.PROPAGATE, Mode.SOLVE], ids=["propagate", "solve"])
@pytest.mark.parametrize("prioritised", [False, True], ids=["plain", "priorities"])
def test_the_rtl_daemon_answers_sudoku_bit_identical_to_the_sim_daemon(
    rtl: Stubs, tcp: Stubs, engine: FastEngine, mode: Mode, prioritised: bool
) -> None:
    domains = sudoku_batch(SUDOKU_DIR / "forum_hardest_1106.csv", BATCH)
    prios = random_priorities(np.random.default_rng(3), BATCH, SUDOKU) if prioritised else None
    answers = []
    for stubs in (rtl, tcp):
        pid = register(stubs.solver, SUDOKU)
        resp = stubs.solver.Solve(solve_request(pid, SUDOKU, domains, mode, prios), timeout=RPC_TIMEOUT_S * 4)
        answers.append(decode(resp, SUDOKU, BATCH))
    assert first_difference(answers[0], answers[1]) == ""
    assert first_difference(answers[0], local(engine, SUDOKU, domains, mode, prios)) == ""


def test_the_rtl_daemon_reports_its_transport(rtl: Stubs) -> None:
    status = rtl.admin.GetDeviceStatus(admin_pb2.GetDeviceStatusRequest(), timeout=RPC_TIMEOUT_S)
    assert status.backend == "rtl" and "card RTL in Verilator (fcsp_card" in status.description
