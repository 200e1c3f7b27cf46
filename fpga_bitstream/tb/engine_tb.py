"""The engine's testbench driver, shared by its cocotb tests and by ``rtl_solve``: it drives ``fcsp_engine`` through
the data the driver sends a card (the program image compiled from the canonical encoding, the initial domains, the
priority rows and the job's options) and reads the whole outcome back, with the clock cycles the engine was busy.
"""

from __future__ import annotations

from typing import Any

from cases import Case
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time
from fpgacsp_proto.encoding import decode_program
from fpgacspd.rtl import EngineParams, compile_program

CLOCK_NS = 10


class TB:
    """Drives one fcsp_engine: load a program image, load an instance, run it, read the outcome."""

    def __init__(self, dut: Any, params: EngineParams) -> None:
        self.dut = dut
        self.params = params
        Clock(dut.clk, CLOCK_NS, unit="ns").start()  # a task of its own (cocotb 2)

    async def reset(self) -> None:
        d = self.dut
        for name in ("prog_we", "dom_we", "prio_we", "start", "mode_solve", "use_prio", "abort_req"):
            getattr(d, name).value = 0
        d.prog_addr.value = d.prog_wdata.value = d.dom_addr.value = d.dom_wdata.value = 0
        d.prio_addr.value = d.prio_wdata.value = d.res_addr.value = 0
        d.node_limit.value = d.max_solutions.value = 1
        d.rst.value = 1
        for _ in range(2):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)

    async def load_program(self, image: list[int]) -> None:
        """Write the words of the image the engine reads (the header and each record; not the strides' padding)."""
        d, p = self.dut, self.params
        d.prog_we.value = 1
        for addr, word in enumerate(image):
            if addr % p.record_stride < (4 if addr < p.record_stride else p.record_words):
                d.prog_addr.value = addr
                d.prog_wdata.value = word
                await RisingEdge(d.clk)
        d.prog_we.value = 0

    async def run(self, case: Case, image: list[int] | None = None) -> dict[str, Any]:
        """Load ``case`` (and its program, unless ``image`` is given: the same program loaded already) and run it."""
        d = self.dut
        if image is None:
            image = compile_program(bytes.fromhex(case.program), self.params)
        await self.load_program(image)
        d.dom_we.value = 1
        for v, word in enumerate(case.domains):
            d.dom_addr.value = v
            d.dom_wdata.value = word
            await RisingEdge(d.clk)
        d.dom_we.value = 0
        if case.priorities is not None:
            d.prio_we.value = 1
            for v, row in enumerate(case.priorities):
                d.prio_addr.value = v
                d.prio_wdata.value = sum(p << (8 * i) for i, p in enumerate(row))
                await RisingEdge(d.clk)
            d.prio_we.value = 0
        d.mode_solve.value = int(case.mode == 2)
        d.use_prio.value = int(case.priorities is not None)
        d.node_limit.value = case.node_limit
        d.max_solutions.value = case.max_solutions
        d.start.value = 1
        await RisingEdge(d.clk)
        started = get_sim_time("ns")
        d.start.value = 0
        await ReadOnly()
        limit = 100 * max(case.expect_cycles, 1) + 1000 if case.expect_cycles >= 0 else 1 << 40
        while not d.done.value:
            await RisingEdge(d.clk)
            await ReadOnly()
            if get_sim_time("ns") - started > limit * CLOCK_NS:
                raise AssertionError(f"{case.name}: no done after {limit} cycles")
        elapsed = round((get_sim_time("ns") - started) / CLOCK_NS)
        out: dict[str, Any] = {
            "status": int(d.status.value),
            "nodes": int(d.nodes.value),
            "solutions": int(d.solutions.value),
            "sweeps": int(d.sweeps.value),
            "cycles": int(d.cycles.value),
            "elapsed": elapsed,
            "aborted": int(d.aborted.value),
        }
        await RisingEdge(d.clk)
        domains = []
        for v in range(len(case.domains)):
            d.res_addr.value = v
            await Timer(1, "ns")
            domains.append(int(d.res_data.value))
        out["domains"] = domains
        return out


def check(case: Case, got: dict[str, Any]) -> None:
    want = {
        "status": case.expect_status,
        "nodes": case.expect_nodes,
        "solutions": case.expect_solutions,
        "sweeps": case.expect_sweeps,
        "cycles": case.expect_cycles,
        "elapsed": case.expect_cycles,  # the counter counts the clock cycles the engine was busy, no more
        "aborted": 0,
        "domains": case.expect_domains,
    }
    wrong = {k: (got[k], v) for k, v in want.items() if got[k] != v}
    assert not wrong, (
        f"{case.name}: (rtl, reference) differ in {wrong}; program {decode_program(bytes.fromhex(case.program))}"
    )
