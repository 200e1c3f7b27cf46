"""A Solve the daemon's device failed (INTERNAL after the daemon's own resets and retries) is sent again.

Solving is pure, so the client retries such a batch a bounded number of times (``_retry.SOLVE_RETRIES_ON_INTERNAL``)
before raising. The daemon here runs a card whose 6th RUN job (the first batch after the 5 of the startup
self-test) and 12th (its retry, after the recovery self-test's 5) fail with a device error, with one retry allowed:
the first Solve ends INTERNAL on the daemon's side, and the client's second try gets the right answer.
"""

from __future__ import annotations

import numpy as np
from daemon_process import DaemonProcess
from fpgacsp import ServerError, connect
from fpgacsp.problems import sudoku_program
from fpgacspd.engine import FastEngine

ARGS = ["--sim-faults", "error@6,error@12", "--device-max-retries", "1", "--device-threads", "1"]


def test_a_solve_the_device_failed_is_retried_and_answered_right() -> None:
    program = sudoku_program(2)
    domains = np.full((3, 16), 15, dtype=np.uint64)
    domains[1, 0] = 1
    with DaemonProcess(ARGS) as daemon:
        client = connect(daemon.address)
        try:
            got = client.solve(program, domains)
            stats = {(m.method, m.code): m.count for m in client.stats().requests}
        finally:
            client.close()
    want = FastEngine(threads=1).solve(program, domains)
    assert np.array_equal(got.domains, want.domains) and np.array_equal(got.status, want.status)
    assert stats[("Solve", "INTERNAL")] == 1 and stats[("Solve", "OK")] == 1  # the daemon failed it once


def test_only_an_internal_answer_counts_as_the_device_failing_the_batch() -> None:
    from fpgacsp import _retry

    assert _retry.SOLVE_RETRIES_ON_INTERNAL == 2
    err = ServerError("x", None, "Solve")
    assert not _retry.solve_failed_on_the_device(err)  # a protocol break on our side, not the device's
