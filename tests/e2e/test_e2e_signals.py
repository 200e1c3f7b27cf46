"""Signals on a real fpgacspd: SIGHUP and SIGUSR1 never interrupt serving, SIGQUIT drains like SIGTERM.

Before, SIGHUP, SIGQUIT and SIGUSR1 killed the daemon at once: no drain, no log line, the Unix socket left behind.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
from daemon_process import DaemonProcess
from fpgacsp.problems import sudoku_program
from fpgacsp_proto.isa import Status

from .wire import RPC_TIMEOUT_S, connect, decode, register, solve_request


def solve_once(target: str) -> None:
    stubs = connect(target)
    program = sudoku_program(2)
    pid = register(stubs.solver, program)
    resp = stubs.solver.Solve(solve_request(pid, program, np.full((1, 16), 15, np.uint64)), timeout=RPC_TIMEOUT_S)
    assert decode(resp, program, 1).status.tolist() == [int(Status.SOLVED)]
    stubs.channel.close()


def test_sighup_and_sigusr1_are_logged_and_serving_goes_on_then_sigquit_drains_and_removes_the_socket() -> None:
    with DaemonProcess(unix_socket=True) as daemon:
        solve_once(daemon.unix_address)
        daemon.send_signal(signal.SIGHUP)
        hup = daemon.wait_for_event("signal")
        assert (hup["signal"], hup["action"]) == ("SIGHUP", "reload")
        daemon.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while len(daemon.events_named("signal")) < 2:
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.02)
        report = daemon.events_named("signal")[1]
        assert (report["signal"], report["action"]) == ("SIGUSR1", "report")
        assert report["state"] == "ready" and report["submitted"] == report["answered"] >= 1
        assert report["threads"] > 1 and report["max_rss_mb"] > 0
        assert daemon.alive()
        solve_once(daemon.unix_address)  # both still serve
        solve_once(daemon.address)

        daemon.send_signal(signal.SIGQUIT)
        assert daemon.wait() == 0
        quit_event = daemon.events_named("signal")[-1]
        assert (quit_event["signal"], quit_event["action"]) == ("SIGQUIT", "stop")
        assert daemon.events_named("draining") and daemon.events_named("stopped")
        assert not os.path.exists(daemon.unix_path), "the Unix socket file was left behind"
