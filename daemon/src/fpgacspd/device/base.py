"""What the daemon sees of a device: the :class:`Device` interface, its status record and states.

The batcher and the admin plane see only this; :class:`~fpgacspd.device.register_device.RegisterDevice`
implements it over the register-level driver, whatever the transport (``sim`` or ``vfio``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from fpgacsp_proto.isa import Program

from ..engine import BatchResult, SolveOptions
from ..selftest import SelfTestReport


class DeviceState(enum.IntEnum):
    """Same values as ``fpgacsp.v1.DeviceState``."""

    STARTING = 1
    READY = 2
    RESETTING = 3
    FAILED = 4
    DRAINING = 5


@dataclass(frozen=True)
class DeviceInfo:
    backend: str
    description: str
    batches: int = 0
    instances: int = 0
    nodes: int = 0
    sweeps: int = 0
    resets: int = 0
    faults: int = 0
    programs_loaded: int = 0
    heartbeat: int = -1  # the card's HEARTBEAT register when the status was taken (-1: not read)
    card_nodes: int = 0  # the card's PERF_NODES counter then: climbs while a job searches
    busy_s: float = 0.0  # how long the device call running then had run (0: the device thread was idle)


class Device(Protocol):
    """A serial constraint-propagation device. Calls come from one thread at a time (the worker's)."""

    backend: str

    def load_program(self, program_id: str, program: Program) -> None:
        """Make ``program`` resident (idempotent)."""

    def unload_program(self, program_id: str) -> None:
        """Free its slot; unknown ids are ignored."""

    def run_batch(
        self,
        program_id: str,
        program: Program,
        domains: np.ndarray,
        priorities: np.ndarray | None,
        options: SolveOptions,
        deadline: float | None = None,
    ) -> BatchResult:
        """Solve ``domains`` (uint64[B, N]); loads the program first when it is not resident. Past ``deadline``
        (``time.monotonic()``) the job is aborted and the batch raises ``DeadlineExpired``."""
        ...

    def abort(self) -> None:
        """Abort the batch running now and every later one (the device is being closed); safe from any thread."""

    def abort_running(self) -> None:
        """Abort the batch running now, if any, but no later one (an operator's reset); safe from any thread."""

    def activity(self) -> float:
        """``time.monotonic()`` of the last sign of life of a call running on the device thread."""
        ...

    def status(self) -> DeviceInfo:
        """Safe from any thread, also while a batch runs: never waits for a job."""
        ...

    def self_test(self) -> SelfTestReport:
        """Known answers through the device (:func:`fpgacspd.selftest.run_self_test`)."""
        ...

    def reset(self) -> None:
        """Return to the power-on state (resident programs are dropped and reloaded on demand)."""

    def close(self) -> None: ...
