"""The cocotb side of ``rtl_solve``: run every case of ``FCSP_CASES_FILE`` on the engine, write the outcomes to
``FCSP_OUTCOMES_FILE`` (a JSON list, in order: status, nodes, solutions, sweeps, cycles, domains)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cocotb
from cases import params_from_env, read_cases
from engine_tb import TB
from fpgacspd.rtl import compile_program


@cocotb.test()
async def solve_every_case(dut: Any) -> None:
    params = params_from_env()
    tb = TB(dut, params)
    await tb.reset()
    cases = read_cases(Path(os.environ["FCSP_CASES_FILE"]))
    images: dict[str, list[int]] = {}
    outcomes = []
    for case in cases:
        image = images.setdefault(case.program, compile_program(bytes.fromhex(case.program), params))
        outcomes.append(await tb.run(case, image))
    Path(os.environ["FCSP_OUTCOMES_FILE"]).write_text(json.dumps(outcomes))
