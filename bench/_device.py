"""The register path in the serving benchmark: driver + simulated card against the fast core, and recovery.

1. Throughput (instances/s) of ``RegisterDevice.run_batch`` over the ``sim`` transport (descriptors in a host
   ring, doorbell, DMA staging, the card's sequencer thread running the fast core, completion, interrupt)
   against ``FastEngine.solve`` called directly, both with one engine thread per core, timed in interleaved
   rounds. Target: at batch 1024 the register path reaches 90% of the direct call.
2. Recovery: a fault is armed for one batch; the time from the call to its (checked) answer, against the
   median of the same batch without a fault. The job timeout is set short (``RECOVERY_TIMEOUTS``) so the
   hang rows are dominated by what recovery itself costs; with the daemon's default ``job_timeout_ms``
   a hang costs that much more.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from fpgacsp_proto.encoding import program_id
from fpgacsp_proto.isa import Program
from fpgacspd.device import DriverTimeouts, RegisterDevice
from fpgacspd.device.sim import Fault, SimParams, SimTransport
from fpgacspd.engine import FastEngine, SolveOptions
from fpgacspd.logs import configure_logging

from bench._timing import Rate, timed_rate, windows

RECOVERY_TIMEOUTS = DriverTimeouts(job_s=0.1, irq_poll_s=0.05, reset_s=0.1)
RECOVERY_BATCH = 64
FAULTS = (Fault.HANG, Fault.ERROR, Fault.CORRUPT, Fault.DROP_IRQ, Fault.WEDGE)


@dataclass(frozen=True)
class PathRow:
    batch: int
    direct_per_s: float
    register_per_s: float
    checked: bool

    @property
    def ratio(self) -> float:
        return self.register_per_s / self.direct_per_s

    @property
    def overhead_ms(self) -> float:
        """What the register path adds to one batch."""
        return (self.batch / self.register_per_s - self.batch / self.direct_per_s) * 1e3


@dataclass(frozen=True)
class RecoveryRow:
    fault: str
    samples: int
    normal_ms: float
    faulted_ms: float
    resets: str
    correct: bool

    @property
    def recovery_ms(self) -> float:
        return self.faulted_ms - self.normal_ms


def measure_register_path(
    program: Program, domains: np.ndarray, batches: Sequence[int], budget: float, rounds: int
) -> list[PathRow]:
    pid, options = program_id(program), SolveOptions()
    engine = FastEngine()
    device = RegisterDevice(SimTransport(SimParams()))
    compiled = engine.compile(program)
    rows = []
    try:
        for batch in batches:
            sets = windows(domains, batch, max(3, 4096 // batch))
            checked = device.run_batch(pid, program, sets[0], None, options).equals(engine.solve(compiled, sets[0]))
            direct, register = Rate(), Rate()
            for _ in range(rounds):
                timed_rate(lambda b: engine.solve(compiled, b), sets, budget / rounds, direct)
                timed_rate(lambda b: device.run_batch(pid, program, b, None, options), sets, budget / rounds, register)
            rows.append(PathRow(batch, direct.per_s, register.per_s, checked))
    finally:
        device.close()
        engine.close()
    return rows


def measure_recovery(program: Program, domains: np.ndarray, samples: int) -> list[RecoveryRow]:
    configure_logging("text", "critical")  # the injected faults are expected: their log lines are noise here
    pid, options = program_id(program), SolveOptions()
    engine = FastEngine()
    transport = SimTransport(SimParams())
    device = RegisterDevice(transport, RECOVERY_TIMEOUTS, max_retries=2)
    batch = domains[:RECOVERY_BATCH]
    want = engine.solve(program, batch)
    rows = []
    try:
        normal = []
        for _ in range(max(5, samples)):
            start = time.perf_counter()
            device.run_batch(pid, program, batch, None, options)
            normal.append(time.perf_counter() - start)
        normal_ms = statistics.median(normal) * 1e3
        for fault in FAULTS:
            times, correct, resets_before = [], True, device.status().resets
            for _ in range(samples):
                transport.card.faults.arm(fault, count=len(batch))
                start = time.perf_counter()
                got = device.run_batch(pid, program, batch, None, options)
                times.append(time.perf_counter() - start)
                correct = correct and got.equals(want)
            resets = device.status().resets - resets_before
            rows.append(RecoveryRow(fault.value, samples, normal_ms, statistics.median(times) * 1e3,
                                    f"{resets / samples:g}", correct))  # fmt: skip
    finally:
        device.close()
        engine.close()
    return rows


def render_register_path(rows: Sequence[PathRow]) -> list[str]:
    out = [
        "## Register path: driver + simulated card vs the fast core called directly (instances/s)",
        "",
        "| batch | fast core direct | driver + sim card | register ÷ direct | added per batch ms | checks |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.batch} | {r.direct_per_s:,.0f} | {r.register_per_s:,.0f} | {r.ratio:.0%} | "
            f"{r.overhead_ms:.2f} | {'ok' if r.checked else 'FAILED'} |"
        )
    return out


def render_recovery(rows: Sequence[RecoveryRow]) -> list[str]:
    t = RECOVERY_TIMEOUTS
    out = [
        "",
        f"## Recovery: one injected fault in a batch of {RECOVERY_BATCH} (job timeout {t.job_s * 1e3:g} ms, "
        f"interrupt poll {t.irq_poll_s * 1e3:g} ms, reset timeout {t.reset_s * 1e3:g} ms)",
        "",
        "| fault | batch without fault ms | batch with the fault ms | recovery ms | resets per fault | samples "
        "| answers |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.fault} | {r.normal_ms:.2f} | {r.faulted_ms:.2f} | {r.recovery_ms:.2f} | {r.resets} | "
            f"{r.samples} | {'correct' if r.correct else 'WRONG'} |"
        )
    out += [
        "",
        "Recovery = detection (the job timeout for a hang; at once for an error interrupt or a bad completion; "
        "two interrupt polls for a lost interrupt, which needs no reset) + soft reset + the known-answer "
        "self-test + the rerun. A wedged card also waits out the soft-reset timeout before the function-level "
        "reset.",
    ]
    return out
