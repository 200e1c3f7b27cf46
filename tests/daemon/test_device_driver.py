"""The register-level driver against the simulated card and against the card's RTL, on every job path.

Every answer is compared bit for bit with the engine's fast core (itself tested against the reference model):
RUN in both modes with and without priorities, batches split over several jobs and over more jobs than the
ring holds, programs loaded by DMA (read back through the program-memory window), evicted when slots or program
memory run out, unloaded; job errors (bad slot, bad program, unmapped buffer, over capability); the register
semantics the model takes from the generated map (read-only, write-1-to-clear, single-pulse); the cycle model.

The tests marked by the ``backend`` parameter run over both transports: ``sim`` and ``rtl`` (fcsp_card in Verilator,
fpgacspd.device.rtl), with the same driver and the same assertions. The others need what only the model has (its
build parameters, its register file) and run over ``sim``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from fpgacsp_proto.encoding import encode_program, program_id
from fpgacsp_proto.isa import AllDiff, Mode, Neq, Program, make_program
from fpgacspd.device import DeviceDead, DeviceFault, DriverTimeouts, RegisterDevice
from fpgacspd.device import _regmap as regs
from fpgacspd.device.driver import Driver
from fpgacspd.device.layout import RESULT, DeviceError, JobCode, Opcode, cycle_count
from fpgacspd.device.rtl import RtlTransport
from fpgacspd.device.sim import SimParams, SimTransport
from fpgacspd.device.transport import Transport
from fpgacspd.engine import FastEngine, SolveOptions
from fpgacspd.errors import DeviceFailure, InvalidArgument
from fpgacspd.selftest import known_answers
from hypothesis import assume, given, settings
from strategies import BatchCase, batch_cases, solve_options

ENGINE = FastEngine(threads=1)


BACKENDS = ["sim", "rtl"]
# the card's RTL runs in a simulator: a job takes milliseconds of host time per instance, a reset several register
# round trips through the bridge
TIMEOUTS = {"sim": DriverTimeouts(job_s=2.0), "rtl": DriverTimeouts(job_s=30.0, reset_s=10.0)}


def make(
    params: SimParams | None = None, queue_log2: int = 8, max_retries: int = 2, backend: str = "sim"
) -> RegisterDevice:
    transport: Transport = RtlTransport() if backend == "rtl" else SimTransport(params or SimParams(threads=1))
    timeouts = TIMEOUTS[backend]
    dev = RegisterDevice(transport, timeouts, max_retries=max_retries)
    if queue_log2 != 8:  # a smaller ring: re-attach the driver with it
        dev.driver.close()
        dev.driver = Driver(transport, timeouts, queue_log2=queue_log2)
    return dev


@pytest.fixture(scope="module", params=BACKENDS)
def device(request: pytest.FixtureRequest) -> Iterator[RegisterDevice]:
    dev = make(backend=request.param)
    yield dev
    dev.close()


def fits(dev: RegisterDevice, program: Program) -> bool:
    """Whether the card can hold ``program`` (the RTL card's engine is built for D <= 9)."""
    caps = dev.driver.caps
    return program.num_vars <= caps.max_vars and program.domain_size <= caps.max_domain


def queens(n: int) -> Program:
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    return make_program(n, n, [Neq(i, j, k) for i, j in pairs for k in (0, i - j, j - i)])


DEFAULT = SolveOptions()


def run(dev: RegisterDevice, program: Program, domains: np.ndarray, prios: np.ndarray | None = None,
        options: SolveOptions = DEFAULT) -> None:  # fmt: skip
    got = dev.run_batch(program_id(program), program, domains, prios, options)
    want = ENGINE.solve(program, domains, prios, options)
    assert got.equals(want)


@settings(max_examples=60, deadline=None)
@given(case=batch_cases(max_batch=12), options=solve_options(max_node_limit=2000))
def test_run_jobs_are_bit_identical_to_the_fast_core(
    device: RegisterDevice, case: BatchCase, options: SolveOptions
) -> None:
    assume(fits(device, case.program))
    run(device, case.program, case.domains, case.priorities, options)


def test_both_modes_with_priorities_on_queens(device: RegisterDevice) -> None:
    program = queens(8)
    doms = np.full((5, 8), 255, dtype=np.uint64)
    prios = np.random.default_rng(1).integers(0, 255, (5, 8, 8), dtype=np.uint8)
    for mode in (Mode.PROPAGATE, Mode.SOLVE):
        run(device, program, doms, prios, SolveOptions(mode, max_solutions=3))
        run(device, program, doms, None, SolveOptions(mode, node_limit=7))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_beyond_the_job_size_and_the_ring_is_split_and_reassembled(backend: str) -> None:
    # 3 jobs in flight; 3 instances a job on the model, the RTL card's CAP_JOB (16) on the RTL
    dev = make(SimParams(threads=1, max_instances=3), queue_log2=2, backend=backend)
    try:
        per_job = dev.driver.caps.max_instances
        assert per_job == (3 if backend == "sim" else 16)
        program = queens(6)
        doms = np.random.default_rng(2).integers(1, 64, (40, 6)).astype(np.uint64)
        jobs_before = dev.counters()["jobs"]
        run(dev, program, doms, None, SolveOptions(max_solutions=5))
        assert dev.counters()["jobs"] - jobs_before == 1 + -(-40 // per_job)  # one LOAD, the RUN jobs
    finally:
        dev.close()


def test_programs_load_by_dma_and_read_back_through_the_window(device: RegisterDevice) -> None:
    program = queens(7)
    pid = program_id(program)
    device.load_program(pid, program)
    resident = device._resident[pid]
    data = encode_program(program)
    assert device.driver.read_program_memory(resident.offset, len(data)) == data
    device.load_program(pid, program)  # idempotent: no second LOAD
    assert device._resident[pid] == resident


def test_slots_and_program_memory_evict_the_least_recently_used() -> None:
    dev = make(SimParams(threads=1, slots=2, program_memory_kib=2))
    try:
        small = [queens(n) for n in (4, 5, 6)]  # 249, 405, 600 bytes
        for p in small:
            dev.load_program(program_id(p), p)
        assert list(dev._resident) == [program_id(small[1]), program_id(small[2])]  # slots: 4-queens evicted
        big = make_program(60, 64, [AllDiff(tuple(range(60)))] + [Neq(i, i + 1, 1) for i in range(59)])
        assert len(encode_program(big)) > 2048 - 1088  # more than the free memory: both others must go
        dev.load_program(program_id(big), big)
        assert list(dev._resident) == [program_id(big)]
        for p in [*small, big]:
            doms = np.full((2, p.num_vars), (1 << p.domain_size) - 1, dtype=np.uint64)
            run(dev, p, doms, None, SolveOptions(Mode.PROPAGATE))
    finally:
        dev.close()


def test_a_program_larger_than_the_device_is_refused_before_any_job() -> None:
    dev = make(SimParams(threads=1, program_memory_kib=1))
    try:
        big = make_program(300, 64, [AllDiff(tuple(range(300)))])
        with pytest.raises(InvalidArgument, match="program: larger than the device's program memory"):
            dev.load_program(program_id(big), big)
    finally:
        dev.close()


def test_unload_frees_the_slot_and_unknown_ids_are_ignored(device: RegisterDevice) -> None:
    program = queens(5)
    pid = program_id(program)
    device.load_program(pid, program)
    before = device.status().programs_loaded
    device.unload_program(pid)
    device.unload_program(pid)
    assert device.status().programs_loaded == before - 1


def submit_and_wait(dev: RegisterDevice, opcode: Opcode, **fields: int) -> JobCode:
    tag = dev.driver.submit(opcode, **fields)
    return dev.driver.wait({tag})[tag].code


@pytest.mark.parametrize("backend", BACKENDS)
def test_job_errors_are_reported_in_the_completion_and_do_not_halt_the_device(backend: str) -> None:
    dev = make(backend=backend)
    try:
        t = dev.transport
        buf = t.alloc_dma(4096)
        assert submit_and_wait(dev, Opcode.NOP) == JobCode.OK
        assert submit_and_wait(dev, Opcode.RUN, slot=9, items=1, node_limit=1, max_solutions=1) == JobCode.BAD_SLOT
        assert submit_and_wait(dev, Opcode.UNLOAD, slot=9) == JobCode.BAD_SLOT
        buf.data[:16] = 0xFF
        assert submit_and_wait(dev, Opcode.LOAD, slot=0, items=16, src_addr=buf.iova) == JobCode.BAD_PROGRAM
        assert submit_and_wait(dev, Opcode.LOAD, slot=0, items=16, src_addr=0xDEAD0000) == JobCode.BAD_ADDRESS
        assert submit_and_wait(dev, Opcode.LOAD, slot=200, items=16, src_addr=buf.iova) == JobCode.BAD_SLOT
        assert submit_and_wait(dev, 9) == JobCode.BAD_OPCODE  # type: ignore[arg-type]
        program = known_answers()[0].program
        data = encode_program(program)
        buf.data[: len(data)] = np.frombuffer(data, np.uint8)
        assert submit_and_wait(dev, Opcode.LOAD, slot=1, items=len(data), src_addr=buf.iova) == JobCode.OK
        unmapped = dict(slot=1, items=1, mode=int(Mode.SOLVE), node_limit=10, max_solutions=1)
        assert submit_and_wait(dev, Opcode.RUN, src_addr=0x10, **unmapped) == JobCode.BAD_ADDRESS
        too_many = dict(unmapped, items=10**6, src_addr=buf.iova)
        assert submit_and_wait(dev, Opcode.RUN, **too_many) == JobCode.OVER_CAPABILITY
        assert not regs.STATUS.HALTED.get(t.read32(regs.STATUS.OFFSET))
        t.free_dma(buf)
    finally:
        dev.close()


def test_a_job_error_on_the_batch_path_is_a_fault_that_fails_after_the_retries() -> None:
    dev = make(max_retries=1)
    try:
        dev.transport.card._regs[regs.CAP_VARS.OFFSET] = 20  # type: ignore[attr-defined]  # the driver read 2^20
        chain = make_program(30, 2, [Neq(i, i + 1, 0) for i in range(29)])
        with pytest.raises(DeviceFailure, match="job_error: LOAD job answered OVER_CAPABILITY"):
            dev.run_batch(program_id(chain), chain, np.full((1, 30), 3, np.uint64), None, SolveOptions())
        status = dev.status()
        assert (status.faults, status.resets) == (2, 1)  # the self-test (programs of <= 16 variables) passed
    finally:
        dev.close()


def test_capabilities_are_checked_before_any_job(device: RegisterDevice) -> None:
    wide = make_program(2, 64, [Neq(0, 1, 0)])
    caps = device.driver.caps
    try:
        device.driver.caps = type(caps)(**{**caps.__dict__, "max_domain": 32})
        with pytest.raises(InvalidArgument, match=r"2 variables of domain 64 exceed the device's capabilities"):
            device.load_program(program_id(wide), wide)
    finally:
        device.driver.caps = caps


def test_results_record_and_cycle_model(device: RegisterDevice) -> None:
    ka = known_answers()[1]  # 6-queens, counted
    device.load_program(program_id(ka.program), ka.program)  # a LOAD costs cycles too: not in this count
    before = device.counters()
    res = device.run_batch(program_id(ka.program), ka.program, np.array([ka.domains] * 4, np.uint64), None, ka.options)
    after = device.counters()
    assert RESULT.itemsize == 24
    assert after["sweeps"] - before["sweeps"] == int(res.sweeps.sum()) == 4 * ka.sweeps
    assert after["nodes"] - before["nodes"] == int(res.nodes.sum()) == 4 * ka.nodes
    lanes = device.driver.caps.lanes
    expected = cycle_count(4 * ka.sweeps, 4 * ka.nodes, len(ka.program.constraints), lanes)
    assert after["cycles"] - before["cycles"] == expected
    assert after["instances"] - before["instances"] == 4 and after["jobs"] - before["jobs"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_register_semantics_follow_the_generated_map(backend: str) -> None:
    t: Transport = RtlTransport() if backend == "rtl" else SimTransport(SimParams(threads=1))
    try:
        assert t.read32(regs.ID.OFFSET) == 0x46435350
        t.write32(regs.ID.OFFSET, 0)  # read-only
        assert t.read32(regs.ID.OFFSET) == 0x46435350
        assert regs.VERSION.MAJOR.get(t.read32(regs.VERSION.OFFSET)) == 1
        assert t.read32(regs.IRQ_MASK.OFFSET) == 0b11  # every source masked after reset
        t.write32(regs.SCRATCH.OFFSET, 0x12345678)
        assert t.read32(regs.SCRATCH.OFFSET) == 0x12345678
        t.write32(regs.CTRL.OFFSET, regs.CTRL.ENABLE.mask | regs.CTRL.SOFT_RESET.mask)
        assert t.read32(regs.CTRL.OFFSET) == 0  # single pulse reads 0; the reset cleared ENABLE
        assert t.read32(regs.SCRATCH.OFFSET) == 0x12345678  # soft reset keeps SCRATCH
        # both interrupt sources, from real events: a NOP's completion, then a doorbell past the ring (QUEUE_CONFIG)
        rings = t.alloc_dma(4096)
        for lo, hi, size in ((regs.JQ_BASE_LO, regs.JQ_BASE_HI, regs.JQ_SIZE), (regs.CQ_BASE_LO, regs.CQ_BASE_HI,
                                                                               regs.CQ_SIZE)):  # fmt: skip
            base = rings.iova + (0 if size is regs.JQ_SIZE else 2048)
            t.write32(lo.OFFSET, base & 0xFFFFFFFF)
            t.write32(hi.OFFSET, base >> 32)
            t.write32(size.OFFSET, 2)  # 4 entries
        rings.data[:64] = 0  # a NOP descriptor, tag 0 (the card echoes whatever tag it gets)
        t.write32(regs.CTRL.OFFSET, regs.CTRL.ENABLE.mask)
        t.write32(regs.JQ_TAIL.OFFSET, 1)
        wait_for(lambda: t.read32(regs.CQ_TAIL.OFFSET) == 1)
        assert t.read32(regs.IRQ_STATUS.OFFSET) == 0b01 and t.read32(regs.PERF_JOBS.OFFSET) >= 1
        t.write32(regs.JQ_TAIL.OFFSET, 5)  # past the 4-entry ring: a device error halts the card
        wait_for(lambda: regs.STATUS.HALTED.get(t.read32(regs.STATUS.OFFSET)) == 1)
        assert regs.ERROR.CODE.get(t.read32(regs.ERROR.OFFSET)) == 3  # QUEUE_CONFIG
        assert t.read32(regs.IRQ_STATUS.OFFSET) == 0b11
        t.write32(regs.IRQ_STATUS.OFFSET, 0b01)  # write 1 to clear
        assert t.read32(regs.IRQ_STATUS.OFFSET) == 0b10
        t.write32(regs.CTRL.OFFSET, regs.CTRL.SOFT_RESET.mask)  # clears the rings, ERROR, IRQ_STATUS, IRQ_MASK
        wait_for(lambda: regs.STATUS.READY.get(t.read32(regs.STATUS.OFFSET)) == 1)
        assert [t.read32(r.OFFSET) for r in (regs.JQ_SIZE, regs.JQ_TAIL, regs.ERROR, regs.IRQ_STATUS)] == [0] * 4
        assert t.read32(regs.IRQ_MASK.OFFSET) == 0b11 and t.read32(regs.PERF_JOBS.OFFSET) >= 1  # counters kept
        assert t.read32(0x1FC) == 0  # unmapped reads 0
        with pytest.raises(Exception, match="4-byte aligned"):
            t.read32(0x2)
        t.write32(regs.PROG_WIN_ADDR.OFFSET, 8)
        t.write32(regs.PROG_WIN_DATA.OFFSET, 0xCAFEF00D)  # programmed I/O, auto-increment
        assert t.read32(regs.PROG_WIN_ADDR.OFFSET) == 12
        t.write32(regs.PROG_WIN_ADDR.OFFSET, 8)
        assert t.read32(regs.PROG_WIN_DATA.OFFSET) == 0xCAFEF00D
        assert t.read32(regs.PROG_WIN_ADDR.OFFSET) == 12
        t.free_dma(rings)
    finally:
        t.close()


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the card did not get there in time"
        time.sleep(0.001)


class WrongCard(SimTransport):
    def __init__(self, magic: int = 0x46435350, scratch_broken: bool = False) -> None:
        super().__init__(SimParams(threads=1))
        self.magic, self.scratch_broken = magic, scratch_broken

    def read32(self, offset: int) -> int:
        if offset == regs.ID.OFFSET:
            return self.magic
        if offset == regs.SCRATCH.OFFSET and self.scratch_broken:
            return 0xFFFFFFFF
        return super().read32(offset)


@pytest.mark.parametrize(
    ("card", "message"),
    [
        (lambda: WrongCard(magic=0xFFFFFFFF), "ID reads 0xffffffff, expected 0x46435350: not an fpgacsp card"),
        (lambda: WrongCard(scratch_broken=True), "SCRATCH wrote 0xa5a5a5a5, read 0xffffffff: bus broken"),
    ],
)
def test_the_driver_refuses_a_device_that_is_not_ours(card: Callable[[], WrongCard], message: str) -> None:
    transport = card()
    try:
        with pytest.raises(DeviceDead, match=message):
            Driver(transport)
    finally:
        transport.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_halted_device_is_reported_as_a_device_error(backend: str) -> None:
    dev = make(max_retries=0, backend=backend)
    try:
        if isinstance(dev.transport, SimTransport):
            with dev.transport.card._cond:
                dev.transport.card._halt(DeviceError.DMA, 0)
            code = "DMA"
        else:  # the card's RTL halts for real: a doorbell past the end of the job ring
            dev.transport.write32(regs.JQ_TAIL.OFFSET, (1 << dev.driver._jq_log2) + 1)
            wait_for(lambda: regs.STATUS.HALTED.get(dev.transport.read32(regs.STATUS.OFFSET)) == 1)
            code = "QUEUE_CONFIG"
        with pytest.raises(DeviceFailure, match=rf"device_error: ERROR\.CODE {code}"):
            dev.run_batch(program_id(queens(4)), queens(4), np.full((1, 4), 15, np.uint64), None, SolveOptions())
        with pytest.raises(DeviceFault):
            dev.driver.wait({dev.driver.submit(Opcode.NOP)})
    finally:
        dev.close()
