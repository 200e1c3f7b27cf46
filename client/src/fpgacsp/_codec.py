"""Plain functions between the client's Python values and ``fpgacsp.v1`` messages; no channel, no I/O.

The sync and asyncio clients share all of it: the input checks that run before any RPC (the daemon's own
checks, so a bad call fails in the training job with the message the daemon would have sent), building
requests, decoding responses (a response that breaks the protocol is a :class:`ServerError`), and the
per-client cache of program ids.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass

import numpy as np
from fpgacsp_proto.bitset import (
    DomainError,
    check_domains,
    check_priorities,
    pack_domains,
    pack_priorities,
    unpack_domains,
)
from fpgacsp_proto.convert import program_to_proto, unpack_status, unpack_u64
from fpgacsp_proto.encoding import program_id
from fpgacsp_proto.isa import Mode, Program
from fpgacsp_proto.limits import MAX_LIMIT  # node_limit and max_solutions: int64 in the engine and the device
from fpgacsp_proto.v1 import admin_pb2, solver_pb2

from ._errors import InvalidArgumentError, ServerError
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

_PROGRAM_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SolveInputs:
    """Checked ``solve`` arguments: contiguous ``uint64[B, N]`` domains, ``uint8[B, N, D]`` priorities or None."""

    domains: np.ndarray
    priorities: np.ndarray | None
    mode: Mode
    node_limit: int | None  # None: the target's default
    max_solutions: int

    @property
    def batch(self) -> int:
        return len(self.domains)


def check_solve_inputs(
    program: object,
    domains: object,
    priorities: object,
    mode: object,
    node_limit: object,
    max_solutions: object,
) -> SolveInputs:
    """Everything the daemon would reject, rejected here first with its message (``InvalidArgumentError``)."""
    prog = check_program(program)
    try:
        doms = check_domains(np.asarray(domains), prog.num_vars, prog.domain_size)
        prios = check_priorities(
            None if priorities is None else np.asarray(priorities), len(doms), prog.num_vars, prog.domain_size
        )
    except DomainError as exc:
        raise InvalidArgumentError(str(exc)) from None
    return SolveInputs(
        doms,
        prios,
        check_mode(mode),
        None if node_limit is None else check_limit("node_limit", node_limit),
        check_limit("max_solutions", max_solutions),
    )


def check_program(program: object) -> Program:
    if not isinstance(program, Program):
        raise TypeError(
            f"program: expected an fpgacsp.Program (see fpgacsp.make_program), got {type(program).__name__}"
        )
    return program


def check_mode(mode: object) -> Mode:
    """``Mode.SOLVE``/``Mode.PROPAGATE``, their values 2/1, or the names ``"solve"``/``"propagate"``."""
    if isinstance(mode, str) and mode.upper() in Mode.__members__:
        return Mode[mode.upper()]
    if not isinstance(mode, bool) and isinstance(mode, int | np.integer) and int(mode) in (1, 2):
        return Mode(int(mode))
    raise InvalidArgumentError(f"mode: must be PROPAGATE (1) or SOLVE (2), got {mode!r}")


def check_limit(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= value <= MAX_LIMIT:
        raise InvalidArgumentError(f"{name}: must be an integer in [1, 2^63 - 1], got {value!r}")
    return int(value)


def check_timeout(value: object, name: str = "timeout") -> float:
    """A deadline in seconds: a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
    return float(value)


def check_program_id(value: str) -> str:
    if not isinstance(value, str) or not _PROGRAM_ID.fullmatch(value):
        raise InvalidArgumentError(f"program_id: expected 64 lowercase hex digits (SHA-256), got {value!r}")
    return value


def empty_result(num_vars: int) -> SolveResult:
    """The answer to a batch of zero instances, given without an RPC (the wire requires B >= 1)."""
    return SolveResult(
        domains=np.zeros((0, num_vars), dtype=np.uint64),
        status=np.zeros(0, dtype=np.uint8),
        nodes=np.zeros(0, dtype=np.int64),
        solutions=np.zeros(0, dtype=np.int64),
        sweeps=np.zeros(0, dtype=np.int64),
        timing=None,
    )


# --- requests ------------------------------------------------------------------------------------------


def register_request(program: Program, pin: bool) -> solver_pb2.RegisterProgramRequest:
    return solver_pb2.RegisterProgramRequest(program=program_to_proto(program), pin=bool(pin))


def solve_request(pid: str, program: Program, inputs: SolveInputs) -> solver_pb2.SolveRequest:
    return solver_pb2.SolveRequest(
        program_id=pid,
        batch_size=inputs.batch,
        domains=pack_domains(inputs.domains, program.domain_size),
        priorities=b"" if inputs.priorities is None else pack_priorities(inputs.priorities),
        mode=f"MODE_{inputs.mode.name}",  # the proto enum label; values equal fpgacsp.Mode
        node_limit=inputs.node_limit or 0,  # 0: the daemon's configured default
        max_solutions=inputs.max_solutions,
    )


# --- responses -----------------------------------------------------------------------------------------


def check_registered_id(response: solver_pb2.RegisterProgramResponse, expected: str) -> str:
    """The daemon's id must be the one computed here: both hash the same canonical encoding."""
    if response.program_id != expected:
        raise ServerError(
            f"RegisterProgram: the daemon named the program {response.program_id!r} but its canonical encoding "
            f"hashes to {expected!r} here: client and daemon disagree on the encoding (mismatched versions?)"
        )
    return expected


def solve_result(response: solver_pb2.SolveResponse, program: Program, batch: int) -> SolveResult:
    """Decode a ``SolveResponse`` for ``batch`` instances; a malformed one raises :class:`ServerError`."""
    try:
        domains = unpack_domains(response.domains, batch, program.num_vars, program.domain_size)
        status = unpack_status(response.status, batch)
        nodes = unpack_u64(response.nodes, batch, "nodes")
        solutions = unpack_u64(response.solutions, batch, "solutions")
        sweeps = unpack_u64(response.sweeps, batch, "sweeps")
    except ValueError as exc:
        raise ServerError(f"malformed Solve response: {exc}") from None
    t = response.timing
    timing = Timing(t.queue_us, t.device_us, t.total_us, t.device_batch_size, t.merged_requests)
    return SolveResult(domains, status, nodes, solutions, sweeps, timing)


def program_info(msg: solver_pb2.ProgramInfo) -> ProgramInfo:
    return ProgramInfo(
        program_id=msg.program_id,
        num_vars=msg.num_vars,
        domain_size=msg.domain_size,
        num_constraints=msg.num_constraints,
        encoded_bytes=msg.encoded_bytes,
        pinned=msg.pinned,
        solves=msg.solves,
        registered_unix_ms=msg.registered_unix_ms,
        last_used_unix_ms=msg.last_used_unix_ms,
    )


def device_status(msg: admin_pb2.DeviceStatus) -> DeviceStatus:
    state = DeviceState(msg.state) if msg.state in DeviceState._value2member_map_ else DeviceState.UNSPECIFIED
    return DeviceStatus(
        backend=msg.backend,
        description=msg.description,
        state=state,
        daemon_version=msg.daemon_version,
        uptime_s=msg.uptime_s,
        batches=msg.batches,
        instances=msg.instances,
        nodes=msg.nodes,
        sweeps=msg.sweeps,
        resets=msg.resets,
        faults=msg.faults,
        programs_loaded=msg.programs_loaded,
        queue_depth=msg.queue_depth,
        max_batch=msg.max_batch,
        max_delay_us=msg.max_delay_us,
        card_nodes=msg.card_nodes,
        busy_ms=msg.busy_ms,
    )


def stats(msg: admin_pb2.Stats) -> Stats:
    return Stats(
        requests=tuple(MethodStats(m.method, m.code, m.count) for m in msg.requests),
        batches=msg.batches,
        instances=msg.instances,
        mean_batch_size=msg.mean_batch_size,
        mean_merged_requests=msg.mean_merged_requests,
        queue_depth=msg.queue_depth,
        programs_loaded=msg.programs_loaded,
        dropped_expired=msg.dropped_expired,
        dropped_cancelled=msg.dropped_cancelled,
        rejected_queue_full=msg.rejected_queue_full,
    )


def self_test_result(msg: admin_pb2.SelfTestResponse) -> SelfTestResult:
    cases = tuple(SelfTestCase(c.name, c.passed, c.detail) for c in msg.cases)
    return SelfTestResult(msg.passed, cases, msg.duration_us)


def reset_result(msg: admin_pb2.ResetResponse) -> ResetResult:
    return ResetResult(msg.self_test_passed, msg.duration_us)


# --- program ids ---------------------------------------------------------------------------------------


class ProgramIds:
    """Program -> id (computed locally, SHA-256 of the canonical encoding) and the ids registered so far.

    Keyed by identity: hashing a large program on every solve would cost more than the lookup saves; the
    entry holds the program itself so a recycled ``id()`` can never match a different program. ``registered``
    is this client's belief; the daemon may have forgotten (released, evicted, restarted), which ``solve``
    learns from ``NOT_FOUND``. ``pinned`` remembers what to ask for when re-registering.
    """

    MAX_CACHED = 256

    def __init__(self) -> None:
        self._by_object: dict[int, tuple[Program, str]] = {}
        self._lock = threading.Lock()
        self.registered: set[str] = set()
        self.pinned: set[str] = set()

    def id_of(self, program: Program) -> str:
        entry = self._by_object.get(id(program))
        if entry is not None and entry[0] is program:
            return entry[1]
        pid = program_id(program)
        with self._lock:
            if len(self._by_object) >= self.MAX_CACHED:
                self._by_object.clear()
            self._by_object[id(program)] = (program, pid)
        return pid

    def mark_registered(self, pid: str, pin: bool) -> None:
        self.registered.add(pid)
        if pin:
            self.pinned.add(pid)

    def forget(self, pid: str) -> None:
        self.registered.discard(pid)
        self.pinned.discard(pid)
