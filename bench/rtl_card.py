"""How fast the card's RTL runs in cosimulation, and its cycles per job against the cycle model.

``fcsp_card`` (fpga_bitstream/rtl/card) in Verilator behind the ``rtl`` transport, under the unchanged driver
(``RegisterDevice``): batches of Sudoku puzzles from each file in the repository's data, SOLVE, one RUN job per
batch (the card's CAP_JOB). Per file, three rounds, each checked bit for bit against the fast core:

- instances/s through the whole path (driver, bridge, simulated card) and simulated clock cycles/s;
- per job: the clock cycles the simulation ran (the card's whole work: descriptor fetch, DMA of domains and results,
  the engine, the completion, and the driver's register accesses) and the engine cycles the card reports
  (``PERF_CYCLES``, the sum of the engine's cycle counters), against the cycle model of docs/device.md computed from
  the answers' sweeps and nodes, and against what the simulated card (``sim``) reports for the same batch.

Usage: ``python -m bench.rtl_card [--batch 16] [--rounds 3] [--out bench/results/rtl_card.md]``.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fpgacsp.problems import load_puzzle_file, parse_sudoku, sudoku_domains, sudoku_program
from fpgacsp_proto.encoding import program_id
from fpgacsp_proto.isa import Mode
from fpgacspd.device import DriverTimeouts, RegisterDevice
from fpgacspd.device.layout import cycle_count
from fpgacspd.device.rtl import RtlTransport
from fpgacspd.device.sim import SimParams, SimTransport
from fpgacspd.engine import FastEngine, SolveOptions

from bench._report import REPO, git_commit, machine, versions

FILES = ("forum_hardest_1106.csv", "magictour_top1465.csv", "kaggle_10k.csv", "serg_benchmark.csv")
TIMEOUTS = DriverTimeouts(job_s=60.0, reset_s=10.0)
OPTIONS = SolveOptions(Mode.SOLVE)


@dataclass(frozen=True)
class Row:
    file: str
    instances_per_s: list[float]  # one per round
    sim_cycles_per_s: list[float]
    clock_cycles_per_job: float  # the simulation's clock cycles per RUN job (median of the rounds)
    card_cycles_per_job: float  # PERF_CYCLES per job, from the RTL
    model_cycles_per_job: float  # the cycle model from the answers' sweeps and nodes
    sim_card_cycles_per_job: float  # PERF_CYCLES per job, from the simulated card
    identical: bool


def spread(xs: list[float]) -> str:
    med = statistics.median(xs)
    return f"{med:,.1f} ({min(xs):,.1f}-{max(xs):,.1f})"


def measure(path: Path, batch: int, rounds: int, rtl: RegisterDevice, sim: RegisterDevice) -> Row:
    program = sudoku_program()
    pid = program_id(program)
    records = load_puzzle_file(path, limit=batch * rounds)
    domains = sudoku_domains(np.stack([parse_sudoku(records[i % len(records)].puzzle) for i in range(batch * rounds)]))
    engine = FastEngine(threads=1)
    transport = rtl.transport
    assert isinstance(transport, RtlTransport)
    rtl.load_program(pid, program)
    sim.load_program(pid, program)
    rates, cps, clocks, card, model, simcard, identical = [], [], [], [], [], [], True
    lanes = rtl.driver.caps.lanes
    for r in range(rounds):
        doms = domains[r * batch : (r + 1) * batch]
        want = engine.solve(program, doms, None, OPTIONS)
        before, cycles0, t0 = rtl.counters(), transport.simulated_cycles(), time.perf_counter()
        got = rtl.run_batch(pid, program, doms, None, OPTIONS)
        wall, cycles1, after = time.perf_counter() - t0, transport.simulated_cycles(), rtl.counters()
        sim_before = sim.counters()
        sim_got = sim.run_batch(pid, program, doms, None, OPTIONS)
        sim_after = sim.counters()
        identical &= got.equals(want) and sim_got.equals(want)
        jobs = after["jobs"] - before["jobs"]
        rates.append(len(doms) / wall)
        cps.append((cycles1 - cycles0) / wall)
        clocks.append((cycles1 - cycles0) / jobs)
        card.append((after["cycles"] - before["cycles"]) / jobs)
        model.append(cycle_count(int(got.sweeps.sum()), int(got.nodes.sum()), len(program.constraints), lanes) / jobs)
        simcard.append((sim_after["cycles"] - sim_before["cycles"]) / (sim_after["jobs"] - sim_before["jobs"]))
    med = statistics.median
    return Row(path.name, rates, cps, med(clocks), med(card), med(model), med(simcard), identical)


def render(rows: list[Row], batch: int, rounds: int, argv: list[str], description: str) -> str:
    lines = [
        "# The card's RTL in cosimulation: speed and cycles per job",
        "",
        f"`{shlex.join(['python', '-m', 'bench.rtl_card', *argv])}`, {datetime.date.today().isoformat()}, "
        f"commit {git_commit()}",
        "",
        f"- Machine: {machine()}",
        f"- Software: {versions(['numpy', 'cocotb', 'cocotbext-axi', 'verilator'])}",
        f"- Card: {description}",
        f"- Batches of {batch} Sudoku puzzles per file (the first {batch * rounds}), SOLVE, one RUN job each; "
        f"{rounds} rounds, medians with (min-max). Every answer bit-identical to the fast core and to the simulated "
        "card: " + ("yes" if all(r.identical for r in rows) else "**NO**"),
        "",
        "| file | instances/s | simulated cycles/s | clock cycles/job | engine cycles/job (RTL) | cycle model/job "
        "| sim card cycles/job (its 64 lanes) | RTL = model |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.file} | {spread(r.instances_per_s)} | {spread(r.sim_cycles_per_s)} | {r.clock_cycles_per_job:,.0f} "
            f"| {r.card_cycles_per_job:,.0f} | {r.model_cycles_per_job:,.0f} | {r.sim_card_cycles_per_job:,.0f} "
            f"| {'yes' if r.card_cycles_per_job == r.model_cycles_per_job else 'NO'} |"
        )
    lines += [
        "",
        "Clock cycles per job are everything the simulated card did for the job: fetching the descriptor, reading "
        "81 domain words per instance and writing 81 output words and a result record (one 8-byte AXI transfer at a "
        "time), the engine, the completion, and the clock that runs while the driver's register reads and writes "
        "cross the bridge. Engine cycles are what the card reports in the completion and PERF_CYCLES; the cycle "
        "model is docs/device.md's formula over the answers' sweeps and nodes at the RTL card's 8 lanes; the simulated "
        "card reports the same formula at its own CAP_ENGINE.LANES (64), hence fewer cycles for the same sweeps and "
        "nodes.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="puzzles per batch (16: one job of the card)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "rtl_card.md")
    args = parser.parse_args(argv)
    rtl = RegisterDevice(RtlTransport(), TIMEOUTS, max_retries=0)
    sim = RegisterDevice(SimTransport(SimParams(threads=1)), TIMEOUTS, max_retries=0)
    try:
        rows = []
        for name in FILES:
            rows.append(measure(REPO / "data" / "sudoku" / name, args.batch, args.rounds, rtl, sim))
            print(rows[-1], flush=True)
        text = render(rows, args.batch, args.rounds, argv, rtl.transport.description)
    finally:
        rtl.close()
        sim.close()
    print(text)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
