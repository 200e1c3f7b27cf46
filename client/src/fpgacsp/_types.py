"""What the client's calls return: plain frozen dataclasses, the same for every target.

Field names mirror the protobuf messages (``solver.proto``, ``admin.proto``) in snake_case, and
:class:`SolveResult` uses the engine's ``BatchResult`` field names, so code written against the local engine
reads a daemon's answer unchanged. Nothing here imports gRPC: the conversions from messages live in
``_codec``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class DeviceState(enum.IntEnum):
    """The device's lifecycle; values equal ``fpgacsp.v1.DeviceState``."""

    UNSPECIFIED = 0
    STARTING = 1  # before the first self-test passed
    READY = 2
    RESETTING = 3
    FAILED = 4  # self-test failed; Solve answers UNAVAILABLE
    DRAINING = 5  # shutting down: in-flight work finishes, new work is refused


class Method(enum.StrEnum):
    """The RPCs of ``fpgacsp.v1``, by their proto names: what errors (``FpgacspError.method``) and ``Stats`` call
    them. A ``str``, so ``err.method == "Solve"`` holds; a misspelt method is an AttributeError, not a silent miss.
    """

    REGISTER_PROGRAM = "RegisterProgram"
    SOLVE = "Solve"
    SOLVE_STREAM = "SolveStream"  # Solves as items of one call: connect_async(..., streaming=True)
    GET_PROGRAM = "GetProgram"
    LIST_PROGRAMS = "ListPrograms"
    RELEASE_PROGRAM = "ReleaseProgram"
    GET_DEVICE_STATUS = "GetDeviceStatus"
    GET_STATS = "GetStats"
    SELF_TEST = "SelfTest"
    RESET = "Reset"

    @property
    def admin(self) -> bool:
        """Served by ``fpgacsp.v1.Admin`` (the admin plane); else by ``fpgacsp.v1.Solver``."""
        return self in _ADMIN_METHODS


_ADMIN_METHODS = frozenset({Method.GET_DEVICE_STATUS, Method.GET_STATS, Method.SELF_TEST, Method.RESET})


@dataclass(frozen=True)
class Timing:
    """Where a served request's time went (microseconds), and the device batch it rode in."""

    queue_us: int  # accepted -> handed to the device
    device_us: int  # the device batch this request rode in
    total_us: int  # accepted -> answered, inside the daemon
    device_batch_size: int  # instances in that device batch (this request's and others')
    merged_requests: int  # requests merged into that device batch


@dataclass(frozen=True)
class SolveResult:
    """Per-instance results of one ``solve``; row ``b`` answers instance ``b``.

    The arrays have the engine's ``BatchResult`` names and dtypes: ``domains`` ``uint64[B, N]`` (the solution
    when SOLVED), ``status`` ``uint8[B]`` (:class:`fpgacsp.Status` values), ``nodes``, ``solutions`` and
    ``sweeps`` ``int64[B]``. ``timing`` is None for the ``local`` target.
    """

    domains: np.ndarray
    status: np.ndarray
    nodes: np.ndarray
    solutions: np.ndarray
    sweeps: np.ndarray
    timing: Timing | None = None

    @property
    def batch_size(self) -> int:
        return len(self.status)

    def equals(self, other: object) -> bool:
        """Bit-identical domains, status and counters (timing aside): the contract between targets."""
        fields = ("domains", "status", "nodes", "solutions", "sweeps")
        return all(np.array_equal(getattr(self, f), getattr(other, f)) for f in fields)


@dataclass(frozen=True)
class ProgramInfo:
    """A registered program as the daemon sees it (``fpgacsp.v1.ProgramInfo``)."""

    program_id: str  # lowercase hex SHA-256 of the canonical encoding
    num_vars: int
    domain_size: int
    num_constraints: int
    encoded_bytes: int
    pinned: bool
    solves: int  # Solve requests answered for this program
    registered_unix_ms: int
    last_used_unix_ms: int  # 0 when never used


@dataclass(frozen=True)
class DeviceStatus:
    """The device and its counters (``fpgacsp.v1.DeviceStatus``)."""

    backend: str  # "engine" (daemon), "local" (in-process); "sim", "vfio", "rtl" with the device layer
    description: str
    state: DeviceState
    daemon_version: str
    uptime_s: int
    batches: int
    instances: int
    nodes: int
    sweeps: int
    resets: int
    faults: int
    programs_loaded: int
    queue_depth: int  # requests waiting for the device
    max_batch: int
    max_delay_us: int
    card_nodes: int = 0  # the card's node counter: climbing while a job searches (slow), frozen if it hangs
    busy_ms: int = 0  # how long the device call running now has run; 0 when idle


@dataclass(frozen=True)
class MethodStats:
    """Requests answered for one method with one gRPC status code name (``"OK"``, ``"NOT_FOUND"``, ...)."""

    method: str
    code: str
    count: int


@dataclass(frozen=True)
class Stats:
    """Request and batching counters since the daemon started (``fpgacsp.v1.Stats``)."""

    requests: tuple[MethodStats, ...]
    batches: int
    instances: int
    mean_batch_size: float  # instances per device batch
    mean_merged_requests: float  # requests per device batch
    queue_depth: int
    programs_loaded: int
    dropped_expired: int  # deadline passed before reaching the device
    dropped_cancelled: int
    rejected_queue_full: int

    def count(self, method: str, code: str | None = None) -> int:
        """Requests of ``method`` (e.g. ``"Solve"``), of one status ``code`` or of all of them."""
        return sum(m.count for m in self.requests if m.method == method and (code is None or m.code == code))


@dataclass(frozen=True)
class SelfTestCase:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class SelfTestResult:
    """The device's known-answer programs, run between batches."""

    passed: bool
    cases: tuple[SelfTestCase, ...]
    duration_us: int


@dataclass(frozen=True)
class ResetResult:
    """A device reset and the self-test that followed it."""

    self_test_passed: bool
    duration_us: int
