"""The daemon's own code running in this process: what the ``local`` target is made of.

Every target offers the same API (:class:`fpgacsp.Client`; ``connect("local")`` wraps what is here), so the CLI
and the training code never care where the engine runs. ``local`` is not a second, smaller daemon: it runs the
daemon's engine (:class:`LocalSolver` over ``fpgacspd.engine.FastEngine``), the daemon's program registry
(:func:`new_registry`: the same size limits and LRU eviction as ``fpgacspd``'s defaults) and the daemon's
known-answer self-test (:func:`self_test`), and turns the daemon code's errors into the library's with the code
the daemon would have answered (:func:`daemon_errors`), so the two targets cannot drift apart.

All of it lives in the ``fpgacsp-daemon`` distribution (the ``fpgacsp[local]`` extra), and this module is the
only one of the client that imports it, each time on first use: importing the client never pulls in the daemon
(or numba), and a training host without the extra still works remotely.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import grpc
import numpy as np
from fpgacsp_proto.isa import Mode, Program
from fpgacsp_proto.limits import DEFAULT_NODE_LIMIT

from ._errors import from_code
from ._types import Method, SelfTestCase, SelfTestResult

if TYPE_CHECKING:
    from fpgacspd.device import Device
    from fpgacspd.engine import BatchResult, SolveOptions
    from fpgacspd.registry import ProgramRegistry

__all__ = ["DEFAULT_NODE_LIMIT", "LocalSolver", "daemon_errors", "new_registry", "self_test"]

_INSTALL_HINT = (
    "the 'local' target runs the fpgacsp engine in-process and needs the fpgacsp-daemon distribution: "
    "pip install 'fpgacsp[local]' (or pip install fpgacsp-daemon)"
)
_COMPILED_MAX = 64  # programs compiled and kept by one LocalSolver: a job rarely uses more than this


class LocalSolver:
    """In-process solver over ``fpgacspd.engine.FastEngine``; compiles each program once and keeps it.

    ``threads`` is passed to the engine (default: one per CPU).
    """

    def __init__(self, threads: int | None = None) -> None:
        engine_mod = _daemon("engine")
        self._engine = engine_mod.FastEngine(threads=threads)
        self._options_cls = engine_mod.SolveOptions
        # keyed by identity (hashing a large program on every call would cost more than the lookup saves);
        # the entry holds the program itself so a recycled id can never match a different program
        self._compiled: dict[int, tuple[Program, Any]] = {}

    def solve(
        self,
        program: Program,
        domains: np.ndarray,
        priorities: np.ndarray | None = None,
        *,
        mode: Mode = Mode.SOLVE,
        node_limit: int = DEFAULT_NODE_LIMIT,
        max_solutions: int = 1,
    ) -> BatchResult:
        """Solve ``domains`` ``uint64[B, N]`` (optional ``priorities`` ``uint8[B, N, D]``); row b answers b."""
        options = self._options_cls(mode=Mode(mode), node_limit=int(node_limit), max_solutions=int(max_solutions))
        return self._run(program, domains, priorities, options)

    def close(self) -> None:
        """Stop the engine's worker threads (the solver can still be used; they restart on demand)."""
        self._engine.close()

    def __enter__(self) -> LocalSolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(
        self, program: Program, domains: np.ndarray, priorities: np.ndarray | None, options: SolveOptions
    ) -> BatchResult:
        result: BatchResult = self._engine.solve(self._compile(program), domains, priorities, options)
        return result

    def _compile(self, program: Program) -> Any:
        entry = self._compiled.get(id(program))
        if entry is not None and entry[0] is program:
            return entry[1]
        if len(self._compiled) >= _COMPILED_MAX:
            self._compiled.clear()
        compiled = self._engine.compile(program)
        self._compiled[id(program)] = (program, compiled)
        return compiled

    def _forget(self, program: Program) -> None:
        """Drop ``program``'s compiled form (a program that will not be solved again, e.g. a self-test's)."""
        entry = self._compiled.get(id(program))
        if entry is not None and entry[0] is program:
            del self._compiled[id(program)]


def new_registry() -> ProgramRegistry:
    """The daemon's program registry with the daemon's default limits (``registry.*`` in docs/daemon.md).

    Not thread-safe (the daemon uses it from its event loop only): the local client holds a lock around it.
    """
    registry: ProgramRegistry = _daemon("registry").ProgramRegistry(_daemon("config").RegistryConfig())
    return registry


def self_test(solver: LocalSolver) -> SelfTestResult:
    """The daemon's known answers (``fpgacspd.selftest``: every constraint kind, both modes, a solution count
    and an UNSAT proof, compared exactly) run through ``solver``."""
    # run_self_test drives a Device; of that interface it only loads, runs and unloads programs, which is all
    # an in-process engine has (no rings, no resets, no activity to report), hence the cast.
    report = _daemon("selftest").run_self_test(cast("Device", _EngineAsDevice(solver)))
    cases = tuple(SelfTestCase(c.name, c.passed, c.detail) for c in report.cases)
    return SelfTestResult(report.passed, cases, int(report.duration_s * 1e6))


class _EngineAsDevice:
    """What :func:`fpgacspd.selftest.run_self_test` calls of a device, over a :class:`LocalSolver`."""

    def __init__(self, solver: LocalSolver) -> None:
        self._solver = solver
        self._loaded: dict[str, Program] = {}

    def load_program(self, program_id: str, program: Program) -> None:
        self._solver._compile(program)
        self._loaded[program_id] = program

    def unload_program(self, program_id: str) -> None:
        program = self._loaded.pop(program_id, None)
        if program is not None:  # the self-test's programs are built afresh each run: do not let them pile up
            self._solver._forget(program)

    def run_batch(
        self,
        program_id: str,
        program: Program,
        domains: np.ndarray,
        priorities: np.ndarray | None,
        options: SolveOptions,
        deadline: float | None = None,
    ) -> BatchResult:
        # no deadline: the engine cannot be interrupted (a local call's timeout is checked, not enforced), and
        # run_self_test passes none; its programs finish in milliseconds
        return self._solver._run(program, domains, priorities, options)


@contextmanager
def daemon_errors(method: Method) -> Iterator[None]:
    """Raise the daemon code's errors (``fpgacspd.errors.DaemonError``) as the library's, for ``method``: the
    class and code the daemon's answer would have become over gRPC (``_errors.from_code``), its message kept."""
    errors = _daemon("errors")
    try:
        yield
    except errors.DaemonError as exc:
        raise from_code(grpc.StatusCode[exc.code], exc.message, method) from None


def _daemon(module: str) -> ModuleType:
    """Import ``fpgacspd.<module>`` or fail with the command that installs it."""
    try:
        return importlib.import_module(f"fpgacspd.{module}")
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
