"""The fast core's kernel compiled before anyone waits for it, and never compiled silently.

numba compiles ``_kernels.solve_range`` on its first call (about 90 s on a 2-core machine) and caches the machine
code on disk (``__pycache__`` beside the source, or ``NUMBA_CACHE_DIR``); later processes load it in about 0.3 s.
``make venv`` runs ``python -m fpgacspd.engine`` (:func:`main`) as its last install step, so the compile happens
there, with a message, and the first ``fpgacsp solve`` or ``fpgacspd`` start only loads. When the cache is missing
anyway (a numba upgrade, an edited kernel, another CPU, an install without make), :func:`ensure_kernel`, which
the engine calls before its first solve in a process, logs one warning saying what is happening and how long it
takes, then compiles.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import numpy as np
from fpgacsp_proto.isa import Neq, make_program

from ..logs import LOGGER_NAME, get_logger, log_event
from . import _kernels
from .batch import empty_result
from .compiled import compile_program
from .reference import SolveOptions

COMPILING = (
    "compiling the fast core's kernel with numba, once (20-90 s on 2 cores, longer under load; cached on disk for "
    "later runs; `make venv` does this at install time)"
)
_log = get_logger("engine")
_lock = threading.Lock()
_ready = False  # read without the lock on every solve: once True it stays True


def ready() -> bool:
    """:func:`ensure_kernel` has run in this process."""
    return _ready


def kernel_loaded() -> bool:
    """This process has the kernel's machine code (compiled or loaded from the cache)."""
    return bool(_kernels.solve_range.signatures)


def kernel_cached() -> bool:
    """numba's disk cache holds the kernel for the current source (loading takes a fraction of a second)."""
    cache = getattr(_kernels.solve_range, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    if cache_file is None:  # numba's cache internals moved: say nothing rather than something wrong
        return True
    try:
        return bool(cache_file._load_index())
    except Exception:  # an unreadable index is a miss to numba too
        return False


def ensure_kernel(announce: bool = True) -> float:
    """Load or compile the kernel now (once per process); seconds taken. Compiling is announced first (a warning
    on the ``fpgacspd.engine`` logger: the daemon's log, or stderr in a program that configured no logging)."""
    global _ready
    if _ready:
        return 0.0
    with _lock:
        if _ready or kernel_loaded():
            _ready = True
            return 0.0
        if announce and not kernel_cached():
            _announce()
        start = time.perf_counter()
        _solve_tiny()
        _ready = True
        return time.perf_counter() - start


def _announce() -> None:
    if logging.getLogger(LOGGER_NAME).handlers:  # the daemon's structured log
        log_event(_log, logging.WARNING, "engine_compiling", note=COMPILING)
    else:  # a library user or the CLI, who configured no logging: Python's last-resort handler prints it
        _log.warning("fpgacsp: %s", COMPILING)


def _solve_tiny() -> None:
    """Two variables that differ: the kernel's one signature, compiled or loaded, straight through the kernel
    (``FastEngine.solve`` would ask :func:`ensure_kernel` again)."""
    from .fast import FastEngine, SolveControl  # here, not at the top: fast imports this module

    program = compile_program(make_program(2, 2, [Neq(0, 1, 0)]))
    FastEngine._run(program, np.full((1, 2), 3, dtype=np.uint64), None, SolveOptions(), empty_result(1, 2), 0, 1,
                    SolveControl(1).words)  # fmt: skip


def main() -> int:
    """``python -m fpgacspd.engine``: compile into the disk cache, saying so (the install step)."""
    if kernel_cached():
        seconds = ensure_kernel()
        print(f"fpgacspd: the fast core's kernel is cached (loaded in {seconds:.1f} s)", file=sys.stderr)
        return 0
    print(f"fpgacspd: {COMPILING} ...", file=sys.stderr, flush=True)
    seconds = ensure_kernel(announce=False)  # the line above said it
    if not kernel_cached():
        print(
            f"fpgacspd: compiled in {seconds:.0f} s, but numba could not write its cache (a read-only "
            "install? set NUMBA_CACHE_DIR to a writable folder): each new process will compile again",
            file=sys.stderr,
        )
        return 1
    print(f"fpgacspd: compiled and cached in {seconds:.0f} s", file=sys.stderr)
    return 0
