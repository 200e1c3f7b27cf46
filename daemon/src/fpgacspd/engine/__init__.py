"""The engine: ISA v1 reference model and the fast simulator core. Never imports torch."""

from .batch import BatchResult, reference_solve_batch
from .compiled import CompiledProgram, compile_program
from .fast import FastEngine, SolveControl
from .reference import DEFAULT_NODE_LIMIT, DEFAULT_OPTIONS, Result, SolveOptions

__all__ = [
    "DEFAULT_NODE_LIMIT",
    "DEFAULT_OPTIONS",
    "BatchResult",
    "CompiledProgram",
    "FastEngine",
    "Result",
    "SolveControl",
    "SolveOptions",
    "compile_program",
    "reference_solve_batch",
]
