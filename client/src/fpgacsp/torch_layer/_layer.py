"""``ConstraintLayer``: a constraint program as an ``nn.Module`` (logits in, solved 0/1 domains out).

The module owns the configuration (program, mode, discretization, estimator, where to solve) and checks all of
it once, at construction; ``forward`` checks the logits' structure and calls the solve operator
(``torch.ops.fpgacsp.solve``, see ``_op``), which checks their values, builds one frozen spec and solves; the
same operator runs eagerly and under ``torch.compile``.
Where to solve is stored as a target string, never as a live connection, when the layer connects itself: the
layer then pickles (DataLoader workers, ``torch.save``, ``copy.deepcopy``) and every process connects on its
first forward, reconnecting when it notices it is a forked child. That connection waits up to
``wait_for_daemon_s`` (30 s) for a daemon that is restarting or draining, so a training step rides through a
daemon restart instead of failing.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from fpgacsp_proto.isa import Mode, Program, Status
from torch import Tensor, nn

from .._retry import check_wait_for_daemon
from . import _op
from ._discretize import ConfidentArgmax, Discretizer, Threshold, check_labels_structure, check_logits_structure
from ._estimators import Estimator, make_estimator
from ._function import SolverClient, SolveRecorder, SolveSpec

__all__ = ["ConstraintLayer", "LayerInfo", "SolveStats", "SolverOutput"]

_MODES = {"solve": Mode.SOLVE, "propagate": Mode.PROPAGATE}
DEFAULT_WAIT_FOR_DAEMON_S = 30.0  # a training step rides through a daemon restart instead of failing
_DISCRETIZERS: dict[str, type[Discretizer]] = {"threshold": Threshold, "confident_argmax": ConfidentArgmax}


class SolverOutput(NamedTuple):
    """What :class:`ConstraintLayer` returns for logits ``[B, N, D]``.

    ``values``: ``[B, N, D]`` 0/1 in the logits' dtype and device, bit ``v`` of each result domain (SOLVED: the
    solution, one 1 per variable; FIXPOINT and LIMIT: the values still possible; CONFLICT and UNSAT: all 0).
    ``status``: ``int64[B]`` :class:`fpgacsp.Status` values. ``nodes``: ``int64[B]`` search nodes. Both on the
    logits' device.
    """

    values: Tensor
    status: Tensor
    nodes: Tensor

    @property
    def solved(self) -> Tensor:
        """``bool[B]``: which instances came back SOLVED."""
        return self.status == int(Status.SOLVED)


@dataclass(frozen=True)
class SolveStats:
    """The solver calls of one pass: how many, their wall time (s), their nodes and their statuses."""

    solver_calls: int
    solver_s: float
    nodes: int
    statuses: MappingProxyType[Status, int]  # every Status, 0 where none came back; read-only


@dataclass(frozen=True)
class LayerInfo:
    """What the layer's last forward cost (``layer.info``, as cvxpylayers publishes ``info``).

    ``batch_size``: B. ``forward_s``: wall time of the whole forward (checks, discretizing, priorities, packing,
    solving, unpacking). ``solver_s``: the part spent in the client's ``solve`` (for ``"local"`` the engine, for a
    daemon the RPC round trip). ``outside_solver_s = forward_s - solver_s``: the layer's own cost.
    ``nodes``, ``statuses`` and ``solver_calls`` sum the forward's solver calls (one today). ``backward``: the
    solves the estimator made in the backward of this forward (Interpolation, Perturbed, Abduction) and
    ``backward_s`` its wall time; both stay at None until that backward has run, and ``backward`` keeps
    ``solver_calls == 0`` for estimators that do not solve (identity, relaxation). The info is a snapshot:
    read ``layer.info`` again after ``loss.backward()`` to see the backward.
    """

    batch_size: int
    forward_s: float
    solver_s: float
    outside_solver_s: float
    nodes: int
    statuses: MappingProxyType[Status, int]
    solver_calls: int
    backward: SolveStats | None = None
    backward_s: float | None = None


def _stats(rec: SolveRecorder, i: int) -> SolveStats:
    counts = MappingProxyType({s: int(rec.statuses[i][int(s)]) for s in Status})
    return SolveStats(rec.calls[i], rec.solver_s[i], rec.nodes[i], counts)


class ConstraintLayer(nn.Module):
    """Solve ``program`` for each instance of a batch of logits ``[B, N, D]``.

    Args:
        program: the constraint program (``N`` variables over ``D`` values) every instance shares.
        mode: ``"solve"`` (search for a solution) or ``"propagate"`` (prune to the fixpoint only).
        discretize: ``"confident_argmax"`` (default, p = 0.9), ``"threshold"`` (p = 0.5), or a
            :class:`Discretizer` such as ``TopK(k)``, ``Threshold(p)``, ``ConfidentArgmax(p)``,
            ``MinProbability(p)``.
        ste: the gradient estimator, by name (built with its defaults) or as an :class:`Estimator` instance:
            ``"identity"`` (:class:`IdentitySTE`), ``"relaxation"`` (:class:`RelaxationSTE`),
            ``"interpolation"`` (:class:`Interpolation`, Vlastelica et al.), ``"perturbed"``
            (:class:`Perturbed`, Berthet et al.) or ``"abduction"`` (:class:`Abduction`, abductive learning: the
            one that learns from the solver alone; pass ``labels`` to the forward). See docs/layer.md for which
            estimator goes with which loss.
        target: where to solve, for :func:`fpgacsp.connect` (``"host:port"``, ``"unix:///path"``, ``"local"``);
            the default when no ``client`` is given is ``"local"``. Each process connects on first use.
        client: an already connected client (anything with the client's ``solve``) instead of a target; it is
            pickled along with the layer, so prefer ``target`` for DataLoader workers.
        node_limit: search nodes per instance before ``LIMIT`` (None: the target's default).
        priorities: in ``"solve"`` mode, try each variable's likelier values first (ranks from the logits).
        timeout: seconds per solve call (None: the client's default deadline).
        wait_for_daemon_s: seconds a solve keeps retrying while the daemon is unavailable (restarting, draining,
            starting up) before it raises :class:`fpgacsp.UnavailableError`; None means 30 s, 0 fails at once.
            It configures the layer's own connection (``target``); a ``client`` you pass has its own setting
            (``fpgacsp.connect(..., wait_for_daemon_s=...)``), so passing both is an error. The call's deadline
            (``timeout``) still bounds every call.
    """

    def __init__(
        self,
        program: Program,
        mode: str | Mode = "solve",
        discretize: str | Discretizer = "confident_argmax",
        ste: str | Estimator = "identity",
        *,
        target: str | None = None,
        client: SolverClient | None = None,
        node_limit: int | None = None,
        priorities: bool = False,
        timeout: float | None = None,
        wait_for_daemon_s: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(program, Program):
            raise TypeError(f"program: expected an fpgacsp.Program, got {type(program).__name__}")
        self.program = program.validate()
        self.mode = _parse_mode(mode)
        self.discretize = _parse_discretize(discretize)
        self.discretize.check_domain_size(program.domain_size)
        self.ste = make_estimator(ste)
        self.target, self._client = _parse_where(target, client)
        self.node_limit = _parse_node_limit(node_limit)
        self.priorities = _parse_priorities(priorities, self.mode)
        self.timeout = _parse_timeout(timeout)
        self.wait_for_daemon_s = _parse_wait(wait_for_daemon_s, self._client)
        self._lock = threading.Lock()
        self._connected: SolverClient | None = None  # our own connection to ``target``, for ``_pid`` only
        self._pid = 0
        self._last: tuple[int, float, SolveRecorder] | None = None  # (B, forward seconds, counts) for ``info``
        self._handle = _op.register_source(self)  # how torch.ops.fpgacsp.solve finds this layer

    def forward(self, logits: Tensor, labels: Tensor | None = None) -> SolverOutput:
        """Discretize, solve and return :class:`SolverOutput`; the inputs are checked before anything is sent.

        ``labels`` (optional, ``int64[B, N]``): the value the loss wants of each variable it observes, ``-1``
        elsewhere (the convention of an ``ignore_index``). The forward ignores them; they reach the estimator
        (:class:`Abduction` fixes those values in its second solve) and are the tensor :func:`hamming_loss` takes.
        """
        check_logits_structure(logits, self.program.num_vars, self.program.domain_size)
        _op.refuse_function_transforms()
        if labels is not None:
            labels = check_labels_structure(labels, logits.shape).detach()
        values, status, nodes = _op.solve(logits, self._handle, labels)
        return SolverOutput(values, status, nodes)

    def solve_spec(self, recorder: SolveRecorder) -> SolveSpec:
        """The spec one forward solves with (read at each forward: a changed ``ste`` or ``node_limit`` counts)."""
        return SolveSpec(
            program=self.program,
            mode=self.mode,
            discretizer=self.discretize,
            estimator=self.ste,
            client=self.client,
            priorities=self.priorities,
            node_limit=self.node_limit,
            timeout=self.timeout,
            recorder=recorder,
        )

    def record_forward(self, batch: int, seconds: float, recorder: SolveRecorder) -> None:
        """Keep the last forward's counts for :attr:`info` (the solve operator calls this)."""
        self._last = (batch, seconds, recorder)

    def backward_recorder(self) -> SolveRecorder:
        """Where a backward records its solves: the last forward's counts (the solve operator's backward asks)."""
        return SolveRecorder(backward=True) if self._last is None else self._last[2]

    @property
    def info(self) -> LayerInfo | None:
        """:class:`LayerInfo` of this layer's last forward in this process (None before the first)."""
        if self._last is None:
            return None
        batch, forward_s, rec = self._last
        fwd = _stats(rec, 0)
        ran_backward = rec.backward_s is not None
        return LayerInfo(
            batch_size=batch,
            forward_s=forward_s,
            solver_s=fwd.solver_s,
            outside_solver_s=max(forward_s - fwd.solver_s, 0.0),
            nodes=fwd.nodes,
            statuses=fwd.statuses,
            solver_calls=fwd.solver_calls,
            backward=_stats(rec, 1) if ran_backward else None,
            backward_s=rec.backward_s,
        )

    @property
    def client(self) -> SolverClient:
        """The client this process solves through (connecting to ``target`` on first use in each process)."""
        if self._client is not None:
            return self._client
        with self._lock:
            if self._connected is None or self._pid != os.getpid():
                # a forked child inherits the parent's connection object but not its threads or sockets
                wait = DEFAULT_WAIT_FOR_DAEMON_S if self.wait_for_daemon_s is None else self.wait_for_daemon_s
                self._connected = _connect(self.target, wait)
                self._pid = os.getpid()
            return self._connected

    def close(self) -> None:
        """Close the connection this layer opened itself (a ``client`` passed in belongs to the caller)."""
        with self._lock:
            conn, self._connected = self._connected, None
        if conn is not None and self._pid == os.getpid():
            close = getattr(conn, "close", None)
            if callable(close):
                close()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        # a connection never travels (the target does), nor the last forward's info (it describes this process)
        state.update(_lock=None, _connected=None, _pid=0, _last=None, _handle=0)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._lock = threading.Lock()
        self._handle = _op.register_source(self)  # a copy is a layer of its own, in this process's registry
        self.__dict__.setdefault("_last", None)  # pickled before ``info`` existed
        if "wait_for_daemon_s" not in self.__dict__:  # pickled before the option existed
            self.wait_for_daemon_s = DEFAULT_WAIT_FOR_DAEMON_S if self._client is None else None

    def extra_repr(self) -> str:
        p = self.program
        where = f"target={self.target!r}" if self._client is None else f"client={type(self._client).__name__}"
        parts = [
            f"program=Program(num_vars={p.num_vars}, domain_size={p.domain_size}, constraints={len(p.constraints)})",
            f"mode={self.mode.name.lower()!r}",
            f"discretize={self.discretize!r}",
            f"ste={self.ste!r}",
            where,
        ]
        if self.node_limit is not None:
            parts.append(f"node_limit={self.node_limit}")
        if self.priorities:
            parts.append("priorities=True")
        if self.timeout is not None:
            parts.append(f"timeout={self.timeout}")
        if self._client is None and self.wait_for_daemon_s != DEFAULT_WAIT_FOR_DAEMON_S:
            parts.append(f"wait_for_daemon_s={self.wait_for_daemon_s}")
        return ", ".join(parts)


def _connect(target: str, wait_for_daemon_s: float) -> SolverClient:
    """``fpgacsp.connect(target, ...)``: the one place the layer opens a connection."""
    from .._client import connect

    return connect(target, wait_for_daemon_s=wait_for_daemon_s)


def _parse_mode(mode: object) -> Mode:
    if isinstance(mode, Mode):
        return mode
    if isinstance(mode, str) and mode in _MODES:
        return _MODES[mode]
    raise ValueError(f"mode: expected 'solve' or 'propagate', got {mode!r}")


def _parse_discretize(discretize: object) -> Discretizer:
    if isinstance(discretize, Discretizer):
        return discretize
    if isinstance(discretize, str) and discretize in _DISCRETIZERS:
        return _DISCRETIZERS[discretize]()
    if discretize in ("top_k", "topk"):
        raise ValueError(f"discretize: {discretize!r} needs k: pass fpgacsp.TopK(k)")
    raise ValueError(
        f"discretize: expected 'threshold', 'confident_argmax' or a Discretizer such as TopK(k), got {discretize!r}"
    )


def _parse_where(target: object, client: object) -> tuple[str, SolverClient | None]:
    if client is not None:
        if target is not None:
            raise ValueError("pass either target or client, not both")
        if not callable(getattr(client, "solve", None)):
            raise TypeError(f"client: expected an object with a solve() method, got {type(client).__name__}")
        return "", client  # type: ignore[return-value]
    if target is None:
        return "local", None
    if not isinstance(target, str) or not target:
        raise TypeError(f"target: expected an address string such as 'localhost:50051' or 'local', got {target!r}")
    return target, None


def _parse_node_limit(node_limit: object) -> int | None:
    if node_limit is None:
        return None
    if isinstance(node_limit, bool) or not isinstance(node_limit, numbers.Integral) or node_limit < 1:
        raise ValueError(f"node_limit: expected None or a positive integer, got {node_limit!r}")
    return int(node_limit)


def _parse_priorities(priorities: object, mode: Mode) -> bool:
    if not isinstance(priorities, bool):
        raise TypeError(f"priorities: expected True or False, got {priorities!r}")
    if priorities and mode != Mode.SOLVE:
        raise ValueError("priorities: only mode='solve' branches, so priorities=True needs mode='solve'")
    return priorities


def _parse_wait(wait_for_daemon_s: object, client: SolverClient | None) -> float | None:
    if client is not None:
        if wait_for_daemon_s is not None:
            raise ValueError(
                "wait_for_daemon_s: configures the layer's own connection (target=...); for a client you pass, "
                "set it on the client: fpgacsp.connect(address, wait_for_daemon_s=...)"
            )
        return None  # the client's own setting applies
    return check_wait_for_daemon(DEFAULT_WAIT_FOR_DAEMON_S if wait_for_daemon_s is None else wait_for_daemon_s)


def _parse_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, numbers.Real)
        or not math.isfinite(float(timeout))
        or timeout <= 0
    ):
        raise ValueError(f"timeout: expected None or a positive number of seconds, got {timeout!r}")
    return float(timeout)
