"""The fast core's kernel is compiled at install time (``python -m fpgacspd.engine``, run by ``make venv``), and a
process that must compile it anyway says so before it starts, on the daemon's log or on stderr, never silently."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from fpgacsp_proto.isa import Neq, make_program
from fpgacspd.engine import FastEngine, precompile
from fpgacspd.logs import LOGGER_NAME, configure_logging


@pytest.fixture
def uncompiled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A process that has not loaded the kernel and finds no cache; the compile itself is recorded, not run."""
    compiled: list[str] = []
    monkeypatch.setattr(precompile, "_ready", False)
    monkeypatch.setattr(precompile, "kernel_loaded", lambda: False)
    monkeypatch.setattr(precompile, "kernel_cached", lambda: False)
    monkeypatch.setattr(precompile, "_solve_tiny", lambda: compiled.append("compiled"))
    yield compiled


def test_the_install_step_finds_the_kernel_cached_and_loads_it_quickly() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fpgacspd.engine"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "the fast core's kernel is cached" in done.stderr  # make venv compiled it; nothing compiles here


NO_CACHE = """
from fpgacspd.engine import precompile
precompile.kernel_loaded = lambda: False
precompile.kernel_cached = lambda: False
precompile._solve_tiny = lambda: print("compiled")
precompile.ensure_kernel()
"""


def test_a_first_compile_is_announced_on_stderr_when_nothing_configured_logging() -> None:
    # a fresh interpreter, as a user's script or `fpgacsp solve` runs: no logging configured (pytest's own
    # capture handler would otherwise take the warning)
    done = subprocess.run([sys.executable, "-c", NO_CACHE], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout == "compiled\n"
    assert "fpgacsp: compiling the fast core's kernel with numba, once" in done.stderr
    assert "cached on disk" in done.stderr


def test_a_first_compile_is_a_structured_warning_in_the_daemons_log(uncompiled: list[str]) -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    try:
        precompile.ensure_kernel()
    finally:
        logging.getLogger(LOGGER_NAME).handlers = []
    event = json.loads(stream.getvalue().splitlines()[0])
    assert (event["level"], event["event"]) == ("warning", "engine_compiling")
    assert "20-90 s" in event["note"]


def test_the_first_solve_of_a_process_ensures_the_kernel_once(uncompiled: list[str]) -> None:
    engine = FastEngine(threads=1)
    try:
        program = make_program(2, 2, [Neq(0, 1, 0)])
        for _ in range(3):
            engine.solve(program, np.full((1, 2), 3, dtype=np.uint64))
    finally:
        engine.close()
    assert uncompiled == ["compiled"]  # three solves, one ensure


def test_a_cached_kernel_loads_without_a_word(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(precompile, "_ready", False)
    monkeypatch.setattr(precompile, "kernel_loaded", lambda: False)
    monkeypatch.setattr(precompile, "kernel_cached", lambda: True)
    monkeypatch.setattr(precompile, "_solve_tiny", lambda: None)
    precompile.ensure_kernel()
    assert capsys.readouterr().err == ""
    assert precompile.ready()
