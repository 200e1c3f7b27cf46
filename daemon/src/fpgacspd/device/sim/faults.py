"""Fault injection for the device model: which RUN job misbehaves, and how.

A plan is a comma-separated list of ``KIND@N`` (the N-th RUN job since power-on, once) and ``KIND/N``
(every N-th RUN job), e.g. ``hang@5,corrupt/40``. Counting RUN jobs, not time, makes a faulty run
repeatable. Tests and benchmarks can also :meth:`FaultPlan.arm` a fault for the next RUN job.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass


class Fault(enum.Enum):
    HANG = "hang"  # the job never completes (until a reset)
    ERROR = "error"  # the device sets ERROR.CODE = INTERNAL, halts and raises the error interrupt
    CORRUPT = "corrupt"  # the completion is written with a flipped bit after its CRC was computed
    SLOW = "slow"  # the completion comes ``slow_us`` late
    DROP_IRQ = "drop_irq"  # the completion is written but its interrupt is never signalled
    LATE_IRQ = "late_irq"  # the interrupt follows the completion ``late_irq_us`` later: a slow path, not a fault
    WEDGE = "wedge"  # the job hangs and soft reset no longer takes: only a function-level reset helps


@dataclass(frozen=True)
class _Rule:
    fault: Fault
    n: int
    every: bool

    def matches(self, job: int) -> bool:
        return job % self.n == 0 if self.every else job == self.n


class FaultPlan:
    """Decides, per RUN job number (1-based), which fault (if any) the model injects. Thread-safe."""

    def __init__(self, rules: tuple[_Rule, ...] = ()) -> None:
        self._rules = rules
        self._armed: list[tuple[Fault, int | None]] = []
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, spec: str, where: str = "device.sim_faults") -> FaultPlan:
        rules = []
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            sep = "@" if "@" in item else "/" if "/" in item else ""
            kind, _, count = item.partition(sep) if sep else (item, "", "")
            try:
                fault = Fault(kind.strip().lower())
            except ValueError:
                known = ", ".join(f.value for f in Fault)
                raise ValueError(f"{where}: unknown fault {kind!r} in {item!r} (known: {known})") from None
            if not sep or not count.strip().isdigit() or int(count) < 1:
                raise ValueError(
                    f"{where}: expected KIND@N (once) or KIND/N (every N-th RUN job), N >= 1, got {item!r}"
                )
            rules.append(_Rule(fault, int(count), sep == "/"))
        return cls(tuple(rules))

    def arm(self, fault: Fault, times: int = 1, count: int | None = None) -> None:
        """Inject ``fault`` into the next ``times`` RUN jobs (before any rule); with ``count``, only into jobs
        of that many instances, so a test can hit its own batch and spare the self-test's small jobs."""
        with self._lock:
            self._armed.extend([(fault, count)] * times)

    def pick(self, job: int, count: int = 0) -> Fault | None:
        """The fault for RUN job number ``job`` (1-based) of ``count`` instances, if any."""
        with self._lock:
            for i, (fault, want) in enumerate(self._armed):
                if want is None or want == count:
                    del self._armed[i]
                    return fault
        return next((r.fault for r in self._rules if r.matches(job)), None)

    def __bool__(self) -> bool:
        return bool(self._rules) or bool(self._armed)
