"""The server's bookkeeping in one object: its phase, the calls running now, when the last one arrived.

:class:`fpgacspd.server.Daemon` owns one :class:`ServerState`; the accounting interceptor
(:class:`fpgacspd.interceptors.CallAccounting`) keeps its call counts, and the shutdown reads them to know when
every handler has answered and calls stopped coming. Nothing here touches gRPC or the device, so it is tested
as plain data.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class ServerPhase(enum.Enum):
    """The daemon's life, in order; a phase never goes back."""

    CREATED = "created"  # constructed, nothing attached or bound
    ATTACHING = "attaching"  # opening the device (a card, its simulator or its RTL)
    STARTING = "starting"  # listeners bound, the startup self-test running
    SERVING = "serving"  # the self-test ran (passed: READY=1; failed: Admin answers, Solve is UNAVAILABLE)
    DRAINING = "draining"  # a stop signal came: new work refused, queued work finished
    STOPPED = "stopped"  # listeners closed, device released


_ORDER = list(ServerPhase)


@dataclass
class ServerState:
    phase: ServerPhase = ServerPhase.CREATED
    active_rpcs: int = 0  # Solver and Admin handlers running now
    last_rpc_at: float = 0.0  # time.monotonic() when the last one started
    stop_signals: int = 0  # SIGTERM/SIGINT/SIGQUIT received
    ready_notified: bool = False  # READY=1 sent to systemd (once)
    addresses: list[str] = field(default_factory=list)  # bound gRPC listeners, ports resolved
    metrics_address: str | None = None

    def enter(self, phase: ServerPhase) -> None:
        """Move to ``phase``; going back is a bug (a drain that restarts serving would lose answers)."""
        if _ORDER.index(phase) < _ORDER.index(self.phase):
            raise AssertionError(f"server: phase {phase.value} after {self.phase.value}")
        self.phase = phase

    def call_started(self) -> float:
        self.active_rpcs += 1
        self.last_rpc_at = now = time.monotonic()
        return now

    def call_ended(self) -> None:
        self.active_rpcs -= 1

    def quiet_for(self, seconds: float) -> bool:
        """No handler runs and none started within ``seconds``: the lame-duck period may end."""
        return self.active_rpcs == 0 and time.monotonic() - self.last_rpc_at >= seconds
