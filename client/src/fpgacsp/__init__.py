"""fpgacsp client: constraint programs for the fpgacsp solver, and the ways to run them.

``connect(target)`` / ``connect_async(target)`` reach a daemon (``"host:port"``, ``"unix:///path"``) or the
in-process engine (``"local"``) through one API; every failed call raises an :class:`FpgacspError`.
Importing this package never imports the daemon: the ``local`` target loads the engine on first use.
"""

from typing import TYPE_CHECKING, Any

from fpgacsp_proto.isa import (
    AllDiff,
    Linear,
    LinearOp,
    Mode,
    Neq,
    Program,
    ProgramError,
    Status,
    Table2,
    make_program,
)

from ._async_client import connect_async
from ._base import AsyncClient, Client
from ._channel import TLS
from ._client import connect
from ._errors import (
    CancelledError,
    DeadlineExceededError,
    FpgacspError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ProgramLimitError,
    QueueFullError,
    ResourceExhaustedError,
    ServerError,
    UnauthenticatedError,
    UnavailableError,
)
from ._local import LocalSolver
from ._types import (
    DeviceState,
    DeviceStatus,
    MethodStats,
    ProgramInfo,
    ResetResult,
    SelfTestCase,
    SelfTestResult,
    SolveResult,
    Stats,
    Timing,
)
from .problems import (
    Cage,
    Graph,
    PuzzleFileError,
    PuzzleRecord,
    QcpInstance,
    SudokuBoards,
    addition_domains,
    addition_program,
    addition_values,
    check_coloring,
    check_latin_square,
    check_queens_solution,
    check_sudoku_solution,
    coloring_program,
    format_sudoku,
    generate_sudoku,
    killer_program,
    load_dimacs,
    load_puzzle_file,
    load_qcp,
    parse_sudoku,
    qcp_domains,
    qcp_program,
    queens_program,
    sudoku_domains,
    sudoku_program,
)

__version__ = "0.1.0"

__all__ = [
    "AllDiff",
    "AsyncClient",
    "Cage",
    "CancelledError",
    "Client",
    "DeadlineExceededError",
    "DeviceState",
    "DeviceStatus",
    "FpgacspError",
    "Graph",
    "InvalidArgumentError",
    "Linear",
    "LinearOp",
    "LocalSolver",
    "MethodStats",
    "Mode",
    "Neq",
    "NotFoundError",
    "PermissionDeniedError",
    "Program",
    "ProgramError",
    "ProgramInfo",
    "ProgramLimitError",
    "PuzzleFileError",
    "PuzzleRecord",
    "QcpInstance",
    "QueueFullError",
    "ResetResult",
    "ResourceExhaustedError",
    "SelfTestCase",
    "SelfTestResult",
    "ServerError",
    "UnauthenticatedError",
    "SolveResult",
    "Stats",
    "Status",
    "SudokuBoards",
    "Table2",
    "Timing",
    "UnavailableError",
    "__version__",
    "addition_domains",
    "addition_program",
    "addition_values",
    "check_coloring",
    "check_latin_square",
    "check_queens_solution",
    "check_sudoku_solution",
    "coloring_program",
    "TLS",
    "connect",
    "connect_async",
    "format_sudoku",
    "generate_sudoku",
    "killer_program",
    "load_dimacs",
    "load_puzzle_file",
    "load_qcp",
    "make_program",
    "parse_sudoku",
    "qcp_domains",
    "qcp_program",
    "queens_program",
    "sudoku_domains",
    "sudoku_program",
]

# The PyTorch layer (fpgacsp.torch_layer), imported on first use so that ``import fpgacsp`` and the CLI never pay
# for importing torch.
_TORCH_LAYER_NAMES = (
    "Abduction",
    "ConfidentArgmax",
    "ConstraintLayer",
    "IdentitySTE",
    "Interpolation",
    "LayerInfo",
    "MinProbability",
    "Perturbed",
    "RelaxationSTE",
    "SolveStats",
    "SolverOutput",
    "Threshold",
    "TopK",
    "Widening",
    "discretize_confident_argmax",
    "discretize_threshold",
    "discretize_top_k",
    "domains_to_values",
    "hamming_loss",
)
__all__ += _TORCH_LAYER_NAMES

if TYPE_CHECKING:  # the names for type checkers; at run time __getattr__ below imports them
    from .torch_layer import Abduction as Abduction
    from .torch_layer import ConfidentArgmax as ConfidentArgmax
    from .torch_layer import ConstraintLayer as ConstraintLayer
    from .torch_layer import IdentitySTE as IdentitySTE
    from .torch_layer import Interpolation as Interpolation
    from .torch_layer import LayerInfo as LayerInfo
    from .torch_layer import MinProbability as MinProbability
    from .torch_layer import Perturbed as Perturbed
    from .torch_layer import RelaxationSTE as RelaxationSTE
    from .torch_layer import SolverOutput as SolverOutput
    from .torch_layer import SolveStats as SolveStats
    from .torch_layer import Threshold as Threshold
    from .torch_layer import TopK as TopK
    from .torch_layer import Widening as Widening
    from .torch_layer import discretize_confident_argmax as discretize_confident_argmax
    from .torch_layer import discretize_threshold as discretize_threshold
    from .torch_layer import discretize_top_k as discretize_top_k
    from .torch_layer import domains_to_values as domains_to_values
    from .torch_layer import hamming_loss as hamming_loss


def __getattr__(name: str) -> Any:
    if name in _TORCH_LAYER_NAMES:
        from . import torch_layer

        return getattr(torch_layer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
