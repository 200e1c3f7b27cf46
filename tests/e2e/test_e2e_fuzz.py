"""Hostile input against a real fpgacspd: 3,000 of the fuzz soak's requests (bench/fuzz.py sends 100,000).

Random bytes to every method and structurally valid but wrong programs and Solve requests built from the protos
(bench/_fuzz.py): none may be answered UNKNOWN or INTERNAL, the valid Solves sent between them must still get the
local engine's answers, and the daemon must still be up and serving at the end.
"""

from __future__ import annotations

from daemon_process import DaemonProcess
from fpgacsp.problems import sudoku_program
from fpgacspd.engine import FastEngine

from bench._fuzz import run_fuzz

from .wire import SUDOKU_DIR, sudoku_batch

COUNT = 3_000


def test_hostile_requests_get_clear_answers_and_valid_ones_stay_right() -> None:
    program = sudoku_program()
    domains = sudoku_batch(SUDOKU_DIR / "kaggle_10k.csv", 64)
    want = FastEngine(threads=1).solve(program, domains)
    with DaemonProcess(["--device-threads", "1"]) as daemon:
        result = run_fuzz(daemon.address, COUNT, program, domains, want)
        assert daemon.alive()
        assert daemon.terminate() == 0
    assert result.sent >= 0.95 * COUNT, result  # hypothesis may skip a few duplicate examples
    assert result.codes["UNKNOWN"] == 0 and result.codes["INTERNAL"] == 0, result.codes
    assert {"INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "OK"} <= set(result.codes), result.codes
    assert result.checked >= COUNT // 60 and result.wrong == 0, result
    assert not daemon.events_named("rpc_failed"), daemon.events_named("rpc_failed")[:3]
