"""Every injected fault is detected and recovered, with correct answers and no batch lost or answered twice.

The simulated card misbehaves on cue (:class:`FaultPlan`): a hung job, a device error, a corrupted completion, a
slow answer (within and beyond the job timeout), a dropped interrupt, a wedged sequencer only a function-level
reset clears; and the faults a card can have, injected into the card's RTL (hung, halted, corrupted, a lost
interrupt). Each test checks the answer bit for bit against the fast core, the fault, reset and retry counts
the metrics see, and the path the recovery took.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from fpgacsp.problems import queens_program
from fpgacsp_proto.encoding import program_id
from fpgacsp_proto.isa import Mode, Neq, Program, make_program
from fpgacspd.device import DeviceState, DeviceWorker, DriverTimeouts, RegisterDevice
from fpgacspd.device.layout import DeviceError
from fpgacspd.device.rtl import FaultKind, RtlTransport
from fpgacspd.device.sim import Fault, FaultPlan, SimParams, SimTransport
from fpgacspd.engine import FastEngine, SolveOptions
from fpgacspd.errors import DeadlineExpired, DeviceFailure, DeviceLost
from fpgacspd.selftest import known_answers

ENGINE = FastEngine(threads=1)
BATCH = 24  # instances of the test batch: the self-test's jobs (2 instances) never match an armed fault
TIMEOUTS = DriverTimeouts(job_s=0.25, irq_poll_s=0.02, reset_s=0.2)


class Events:
    def __init__(self) -> None:
        self.faults: Counter[str] = Counter()
        self.resets: Counter[str] = Counter()
        self.retries = 0
        self.aborts = 0

    def device_fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def device_reset(self, kind: str) -> None:
        self.resets[kind] += 1

    def device_retry(self) -> None:
        self.retries += 1

    def device_aborted(self) -> None:
        self.aborts += 1

    def device_job_cycles(self, cycles: int) -> None:
        pass


def make(plan: FaultPlan | None = None, max_retries: int = 2, slow_us: int = 100_000) -> tuple[RegisterDevice, Events]:
    events = Events()
    transport = SimTransport(SimParams(threads=1, slow_us=slow_us), plan or FaultPlan())
    return RegisterDevice(transport, TIMEOUTS, max_retries, events), events


@pytest.fixture
def device() -> Iterator[tuple[RegisterDevice, Events]]:
    dev, events = make()
    yield dev, events
    dev.close()


def batch() -> tuple[Program, np.ndarray, SolveOptions]:
    ka = known_answers()[1]  # 6-queens with a solution count: the answer has content to get wrong
    rng = np.random.default_rng(7)
    doms = rng.integers(1, 64, (BATCH, 6)).astype(np.uint64)
    doms[0] = ka.domains
    return ka.program, doms, ka.options


def solve_and_check(dev: RegisterDevice) -> None:
    program, doms, options = batch()
    got = dev.run_batch(program_id(program), program, doms, None, options)
    assert got.equals(ENGINE.solve(program, doms, None, options))


def card(dev: RegisterDevice) -> SimTransport:
    assert isinstance(dev.transport, SimTransport)
    return dev.transport


@pytest.mark.parametrize(
    ("fault", "kind", "reset"),
    [
        (Fault.HANG, "timeout", "soft"),
        (Fault.ERROR, "device_error", "soft"),
        (Fault.CORRUPT, "bad_completion", "soft"),
        (Fault.WEDGE, "timeout", "function"),
    ],
)
def test_a_fault_is_recovered_by_reset_self_test_and_retry(
    device: tuple[RegisterDevice, Events], fault: Fault, kind: str, reset: str
) -> None:
    dev, events = device
    solve_and_check(dev)
    jobs_before = dev.counters()["jobs"]
    card(dev).card.faults.arm(fault, count=BATCH)
    solve_and_check(dev)
    assert events.faults == Counter({kind: 1}) and events.resets == Counter({reset: 1}) and events.retries == 1
    status = dev.status()
    assert (status.faults, status.resets) == (1, 1)
    if reset == "soft":  # the card kept counting across a soft reset: self-test and retry ran as jobs
        assert dev.counters()["jobs"] - jobs_before >= len(known_answers()) + 1
    solve_and_check(dev)  # and the device is healthy afterwards
    assert sum(events.faults.values()) == 1


def test_a_dropped_interrupt_is_found_by_polling_without_a_reset(device: tuple[RegisterDevice, Events]) -> None:
    dev, events = device
    card(dev).card.faults.arm(Fault.DROP_IRQ, count=BATCH)
    start = time.monotonic()
    solve_and_check(dev)
    assert time.monotonic() - start >= TIMEOUTS.irq_poll_s  # it waited one poll interval, not a job timeout
    assert events.faults == Counter({"lost_interrupt": 1}) and not events.resets and events.retries == 0


def test_an_interrupt_that_trails_its_completion_is_not_counted_lost() -> None:
    """A card writes the completion, then signals. When the driver's poll times out between the two it finds the
    completion without its interrupt; that is a slow interrupt path, not a lost interrupt (the driver used to
    count those: false faults in the metrics under load). Here every batch's interrupt comes 30 ms after its
    completion against a 20 ms poll, so the poll expires in that gap every time."""
    events = Events()
    transport = SimTransport(SimParams(threads=1, late_irq_us=30_000), FaultPlan())
    dev = RegisterDevice(transport, TIMEOUTS, 2, events)
    try:
        for _ in range(5):
            card(dev).card.faults.arm(Fault.LATE_IRQ, count=BATCH)
            solve_and_check(dev)
        assert not events.faults and not events.resets and events.retries == 0
    finally:
        dev.close()


def test_a_slow_answer_within_the_timeout_is_no_fault() -> None:
    dev, events = make(slow_us=100_000)  # 0.1 s < job timeout 0.25 s
    try:
        card(dev).card.faults.arm(Fault.SLOW, count=BATCH)
        start = time.monotonic()
        solve_and_check(dev)
        assert time.monotonic() - start >= 0.1
        assert not events.faults and not events.resets
    finally:
        dev.close()


def test_a_slow_answer_beyond_the_timeout_is_a_hang_and_its_late_completion_is_dropped() -> None:
    dev, events = make(slow_us=600_000)
    try:
        card(dev).card.faults.arm(Fault.SLOW, count=BATCH)
        solve_and_check(dev)
        assert events.faults == Counter({"timeout": 1}) and events.resets == Counter({"soft": 1})
        time.sleep(0.5)  # the slow job's completion would land now: the reset abandoned it
        solve_and_check(dev)
        assert sum(events.faults.values()) == 1  # no stray completion, sequence or tag error afterwards
    finally:
        dev.close()


def test_a_fault_on_every_retry_fails_only_that_batch() -> None:
    dev, events = make(max_retries=2)
    try:
        card(dev).card.faults.arm(Fault.CORRUPT, times=3, count=BATCH)
        with pytest.raises(DeviceFailure, match=r"bad_completion: .*\(after 2 resets and retries\)") as info:
            solve_and_check(dev)
        assert not isinstance(info.value, DeviceLost)  # the self-tests passed: the device is fine
        assert events.faults == Counter({"bad_completion": 3}) and events.retries == 2
        solve_and_check(dev)  # the next batch runs normally
    finally:
        dev.close()


def test_a_device_that_faults_in_every_self_test_is_lost() -> None:
    dev, events = make(FaultPlan.parse("error/1"), max_retries=1)  # every RUN job, the self-test's included
    worker = DeviceWorker(dev)
    try:
        program, doms, options = batch()
        with pytest.raises(DeviceLost, match="the self-test faulted after each of 2 resets"):
            asyncio.run(worker.run_batch(program_id(program), program, doms, None, options))
        assert worker.state == DeviceState.FAILED
        assert events.faults["device_error"] == 3
    finally:
        worker.close()


def test_a_plan_of_periodic_faults_under_many_batches_loses_nothing() -> None:
    plan = FaultPlan.parse("hang/23,error/13,corrupt/17,drop_irq/3,slow/7")  # sparse enough for 5-job self-tests
    dev, events = make(plan, max_retries=3, slow_us=20_000)
    try:
        for _ in range(30):
            solve_and_check(dev)
        kinds = set(events.faults)
        assert {"timeout", "device_error", "bad_completion", "lost_interrupt"} <= kinds
        # every retry followed a reset; a fault inside a recovery's self-test costs a reset but no retry
        assert 1 <= events.retries <= sum(events.resets.values())
    finally:
        dev.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("melt@3", "unknown fault 'melt' in 'melt@3' (known: hang, error, corrupt, slow, drop_irq, late_irq, wedge)"),
        ("hang", "expected KIND@N (once) or KIND/N (every N-th RUN job), N >= 1, got 'hang'"),
        ("hang/0", "N >= 1, got 'hang/0'"),
        ("hang@x", "got 'hang@x'"),
    ],
)
def test_fault_plan_errors_name_the_setting(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^device.sim_faults: .*{message.split('(')[0][:20]}") as info:
        FaultPlan.parse(spec)
    assert message in str(info.value)


def test_fault_plan_rules() -> None:
    plan = FaultPlan.parse("hang@2, corrupt/3")
    assert [plan.pick(j) for j in range(1, 7)] == [None, Fault.HANG, Fault.CORRUPT, None, None, Fault.CORRUPT]
    plan.arm(Fault.SLOW, count=5)
    assert plan.pick(1, count=2) is None and plan.pick(1, count=5) is Fault.SLOW


def test_a_fault_while_unloading_resets_once_and_does_not_retry(device: tuple[RegisterDevice, Events]) -> None:
    dev, events = device
    program = known_answers()[0].program
    dev.load_program(program_id(program), program)
    sim = card(dev).card
    with sim._cond:
        sim._halt(DeviceError.INTERNAL, 0)  # the card halts before it fetches the UNLOAD
    dev.unload_program(program_id(program))
    assert events.faults == Counter({"device_error": 1}) and events.resets == Counter({"soft": 1})
    assert events.retries == 0 and dev.status().programs_loaded == 0  # the reset freed the slot: no retry
    solve_and_check(dev)


def test_a_long_job_that_keeps_finishing_instances_is_not_a_hang() -> None:
    """PERF_INSTANCES advances as instances finish, so a job may run far longer than the job timeout."""
    events = Events()
    dev = RegisterDevice(SimTransport(SimParams(threads=1)), DriverTimeouts(job_s=0.3, irq_poll_s=0.02), 0, events)
    try:
        program = queens_program(11)  # counting all 2,680 solutions: ~40,000 nodes, tens of ms an instance
        doms = np.full((24, 11), (1 << 11) - 1, dtype=np.uint64)
        options = SolveOptions(max_solutions=10**6)
        start = time.monotonic()
        got = dev.run_batch(program_id(program), program, doms, None, options)
        assert time.monotonic() - start > 0.6  # twice the job timeout, in one RUN job
        assert got.equals(ENGINE.solve(program, doms, None, options)) and not events.faults
    finally:
        dev.close()


# ---------------------------------------------------------------------------------------------- the card's RTL
# The faults a card can have, injected into fcsp_card through its testbench hooks (RtlTransport.arm): the same
# detection and recovery as on the model. Its CAP_JOB is 16 instances, so the test batch of 24 is a job of 16 and one
# of 8, and the fault is armed for the job of 16 (the self-test's jobs have at most 3).
RTL_TIMEOUTS = DriverTimeouts(job_s=1.0, irq_poll_s=0.05, reset_s=10.0)


@pytest.fixture(scope="module")
def rtl_device() -> Iterator[tuple[RegisterDevice, Events]]:
    events = Events()
    dev = RegisterDevice(RtlTransport(), RTL_TIMEOUTS, 2, events)
    yield dev, events
    dev.close()


@pytest.mark.parametrize(
    ("fault", "kind"),
    [(FaultKind.HANG, "timeout"), (FaultKind.ERROR, "device_error"), (FaultKind.CORRUPT, "bad_completion")],
    ids=["hang", "error", "corrupt"],
)
def test_a_fault_of_the_rtl_card_is_recovered_by_reset_self_test_and_retry(
    rtl_device: tuple[RegisterDevice, Events], fault: FaultKind, kind: str
) -> None:
    dev, events = rtl_device
    transport = dev.transport
    assert isinstance(transport, RtlTransport)
    solve_and_check(dev)
    before = (Counter(events.faults), Counter(events.resets), events.retries)
    transport.arm(fault, count=dev.driver.caps.max_instances)
    solve_and_check(dev)
    assert events.faults - before[0] == Counter({kind: 1}) and events.resets - before[1] == Counter({"soft": 1})
    assert events.retries - before[2] == 1
    solve_and_check(dev)  # and the card is healthy afterwards
    assert events.faults - before[0] == Counter({kind: 1})


def test_a_dropped_interrupt_of_the_rtl_card_is_found_by_polling_without_a_reset(
    rtl_device: tuple[RegisterDevice, Events],
) -> None:
    dev, events = rtl_device
    transport = dev.transport
    assert isinstance(transport, RtlTransport)
    program, doms, options = batch()
    doms = doms[: dev.driver.caps.max_instances]  # one RUN job: no later interrupt wakes the driver early
    dev.load_program(program_id(program), program)
    before = (Counter(events.faults), Counter(events.resets))
    transport.arm(FaultKind.DROP_IRQ)  # the next completion's MSI-X message is lost between card and host
    got = dev.run_batch(program_id(program), program, doms, None, options)
    assert got.equals(ENGINE.solve(program, doms, None, options))
    assert events.faults - before[0] == Counter({"lost_interrupt": 1}) and events.resets == before[1]


def test_a_job_past_its_deadline_is_aborted_on_the_rtl_card_without_a_reset(
    rtl_device: tuple[RegisterDevice, Events],
) -> None:
    dev, events = rtl_device
    before = (Counter(events.faults), Counter(events.resets), events.aborts)
    pigeons = make_program(9, 8, [Neq(i, j, 0) for i in range(9) for j in range(i + 1, 9)])  # 8! nodes to UNSAT
    options = SolveOptions(Mode.SOLVE, node_limit=10**8)
    start = time.monotonic()
    with pytest.raises(DeadlineExpired, match="its job was aborted"):
        dev.run_batch(program_id(pigeons), pigeons, np.full((1, 9), 255, np.uint64), None, options, start + 0.5)
    assert time.monotonic() - start < 0.5 + RTL_TIMEOUTS.job_s  # CTRL.ABORT stopped the search at its next node
    assert events.aborts == before[2] + 1 and events.faults == before[0] and events.resets == before[1]
    solve_and_check(dev)  # the card serves on: no reset, the slots still loaded
