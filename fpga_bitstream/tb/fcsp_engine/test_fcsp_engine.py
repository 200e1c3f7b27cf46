"""fcsp_engine against the reference model: every field of every outcome, and cycles against the cycle model.

pytest builds the engine for each configuration below (``sim.run``) and hands the cocotb test a JSON file of cases
(``cases.py``: seeded random programs of every kind, or Sudoku puzzles from ``data/``), each with the reference
model's outcome. The testbench drives the engine through the data the driver sends a card: the program image
compiled from the canonical encoding, the initial domains and the priority rows, and the job's options.
``FCSP_ENGINE_CASES`` sets how many random cases per configuration (``make rtl-long`` runs 10,000).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge, Timer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cases import Case, read_cases, random_cases, write_cases  # noqa: E402
from fpgacsp_proto.encoding import decode_program  # noqa: E402
from fpgacspd.rtl import TEST_SMALL, EngineParams, compile_program  # noqa: E402
from fpgacspd.rtl.params import TEST_WIDE  # noqa: E402

CLOCK_NS = 10


class TB:
    """Drives one fcsp_engine: load a program image, load an instance, run it, read the outcome."""

    def __init__(self, dut: object, params: EngineParams) -> None:
        self.dut = dut
        self.params = params
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())

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

    async def run(self, case: Case, image: list[int]) -> dict[str, object]:
        d = self.dut
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
        started = cocotb.utils.get_sim_time("ns")
        d.start.value = 0
        await ReadOnly()
        limit = 100 * max(case.expect_cycles, 1) + 1000
        while not d.done.value:
            await RisingEdge(d.clk)
            await ReadOnly()
            if cocotb.utils.get_sim_time("ns") - started > limit * CLOCK_NS:
                raise AssertionError(f"{case.name}: no done after {limit} cycles")
        elapsed = round((cocotb.utils.get_sim_time("ns") - started) / CLOCK_NS)
        out = {
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


def check(case: Case, got: dict[str, object]) -> None:
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
    assert not wrong, f"{case.name}: (rtl, reference) differ in {wrong}; program {decode_program(bytes.fromhex(case.program))}"


@cocotb.test()
async def engine_equals_reference(dut: object) -> None:
    params = EngineParams(**{k: int(v) for k, v in (kv.split("=") for kv in os.environ["FCSP_PARAMS"].split(","))})
    tb = TB(dut, params)
    await tb.reset()
    cases = read_cases(Path(os.environ["FCSP_CASES_FILE"]))
    for case in cases:
        got = await tb.run(case, compile_program(bytes.fromhex(case.program), params))
        check(case, got)
    dut._log.info(f"{len(cases)} cases bit-identical to the reference model, cycles equal to the cycle model")


# --- pytest: the configurations and case sets ---------------------------------------------------------------


def run_cases(params: EngineParams, cases: list[Case], tmp_path: Path) -> None:
    import sim

    path = write_cases(tmp_path / "cases.json", cases)
    env = {
        "FCSP_CASES_FILE": str(path),
        "FCSP_PARAMS": ",".join(f"{k}={v}" for k, v in vars(params).items()),
    }
    sim.run("fcsp_engine", "test_fcsp_engine", HERE, params.verilog_parameters(), env)


@pytest.mark.parametrize("params", [TEST_SMALL, TEST_WIDE], ids=["small", "wide"])
def test_engine_is_bit_identical_to_the_reference_on_random_programs(params: EngineParams, tmp_path: Path) -> None:
    count = int(os.environ.get("FCSP_ENGINE_CASES", "150"))
    seed = int(os.environ.get("FCSP_ENGINE_SEED", "1"))
    run_cases(params, random_cases(seed, count, params), tmp_path)
