"""The daemon's fast engine running in this process: what the ``local`` target's client calls.

Every target offers the same API (:class:`fpgacsp.Client`; ``connect("local")`` wraps this solver), so the
CLI and the training code never care where the engine runs. The engine lives in
the ``fpgacsp-daemon`` distribution; it is imported only when a ``LocalSolver`` is built, so importing the
client never pulls in the daemon (or numba) and a training host without the extra still works remotely.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from fpgacsp_proto.isa import Mode, Program

if TYPE_CHECKING:
    from fpgacspd.engine import BatchResult

DEFAULT_NODE_LIMIT = 1_000_000
_INSTALL_HINT = (
    "the 'local' target runs the fpgacsp engine in-process and needs the fpgacsp-daemon distribution: "
    "pip install 'fpgacsp[local]' (or pip install fpgacsp-daemon)"
)


class LocalSolver:
    """In-process solver over ``fpgacspd.engine.FastEngine``; compiles each program once and keeps it.

    ``threads`` is passed to the engine (default: one per CPU).
    """

    def __init__(self, threads: int | None = None) -> None:
        engine_mod = _import_engine()
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
        result: BatchResult = self._engine.solve(self._compile(program), domains, priorities, options)
        return result

    def close(self) -> None:
        """Stop the engine's worker threads (the solver can still be used; they restart on demand)."""
        self._engine.close()

    def __enter__(self) -> LocalSolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _compile(self, program: Program) -> Any:
        entry = self._compiled.get(id(program))
        if entry is not None and entry[0] is program:
            return entry[1]
        if len(self._compiled) >= 64:  # bounded: a job rarely uses more programs than this
            self._compiled.clear()
        compiled = self._engine.compile(program)
        self._compiled[id(program)] = (program, compiled)
        return compiled


def _import_engine() -> Any:
    """Import ``fpgacspd.engine`` or fail with the command that installs it."""
    try:
        import fpgacspd.engine as engine_mod
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return engine_mod
