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
from typing import Any

import cocotb
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cases import Case, params_env, params_from_env, random_cases, read_cases, sudoku_cases, write_cases  # noqa: E402
from engine_tb import TB, check  # noqa: E402
from fpgacspd.rtl import SUDOKU9, SUDOKU9_CROSSBAR, TEST_SMALL, TEST_WIDE, EngineParams  # noqa: E402


@cocotb.test()
async def engine_equals_reference(dut: Any) -> None:
    params = params_from_env()
    tb = TB(dut, params)
    await tb.reset()
    cases = read_cases(Path(os.environ["FCSP_CASES_FILE"]))
    for case in cases:
        got = await tb.run(case)
        check(case, got)
    dut._log.info(f"{len(cases)} cases bit-identical to the reference model, cycles equal to the cycle model")


# --- pytest: the configurations and case sets ---------------------------------------------------------------


def run_cases(params: EngineParams, cases: list[Case], tmp_path: Path) -> None:
    import sim

    path = write_cases(tmp_path / "cases.json", cases)
    env = {"FCSP_CASES_FILE": str(path), **params_env(params)}
    sim.run("fcsp_engine", "test_fcsp_engine", HERE, params.verilog_parameters(), env)


@pytest.mark.parametrize("params", [TEST_SMALL, TEST_WIDE], ids=["small", "wide"])
def test_engine_is_bit_identical_to_the_reference_on_random_programs(params: EngineParams, tmp_path: Path) -> None:
    count = int(os.environ.get("FCSP_ENGINE_CASES", "150"))
    seed = int(os.environ.get("FCSP_ENGINE_SEED", "1"))
    run_cases(params, random_cases(seed, count, params), tmp_path)


SUDOKU_FILES = sorted((HERE.parents[2] / "data" / "sudoku").glob("*.csv"))


@pytest.mark.parametrize("path", SUDOKU_FILES, ids=[p.stem for p in SUDOKU_FILES])
def test_engine_is_bit_identical_to_the_reference_on_samples_of_every_sudoku_file(path: Path, tmp_path: Path) -> None:
    count = int(os.environ.get("FCSP_ENGINE_SUDOKU", "4"))
    run_cases(SUDOKU9, sudoku_cases(path, count, seed=1, lanes=SUDOKU9.lanes), tmp_path)


def test_the_crossbar_sudoku_engine_is_bit_identical_on_the_hardest_puzzles(tmp_path: Path) -> None:
    count = int(os.environ.get("FCSP_ENGINE_SUDOKU", "4"))
    path = HERE.parents[2] / "data" / "sudoku" / "forum_hardest_1106.csv"
    run_cases(SUDOKU9_CROSSBAR, sudoku_cases(path, count, seed=2, lanes=SUDOKU9_CROSSBAR.lanes), tmp_path)
