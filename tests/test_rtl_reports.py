"""The committed synthesis reports (fpga_bitstream/reports/*.json) describe the RTL as it is now.

No synthesis runs here: each report carries ``source_sha256``, the hash ``fpga_bitstream/synth/synth.py`` took over
the RTL and itself when it wrote the report, and it must equal the same function over the current files; and the
Verilog parameters it was built with must be those of its configuration in ``fpgacspd.rtl.params``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SYNTH = REPO / "fpga_bitstream" / "synth" / "synth.py"
REPORTS = sorted((REPO / "fpga_bitstream" / "reports").glob("*.json"))


def load_synth() -> ModuleType:
    """synth.py is a script, not a package: load it by path (it imports only the standard library and
    fpgacspd at module level, never the synthesis tools)."""
    spec = importlib.util.spec_from_file_location("fcsp_synth", SYNTH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


synth = load_synth()


def load(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return report


def rerun(report: dict[str, Any]) -> str:
    config = report.get("config")
    return f".venv/bin/python fpga_bitstream/synth/synth.py --config {config} (was: {report.get('command')})"


def test_every_report_matches_the_current_sources() -> None:
    for path in REPORTS:
        check_sources(path)


def test_every_report_has_the_parameters_of_its_configuration() -> None:
    for path in REPORTS:
        check_parameters(path)


def check_sources(path: Path) -> None:
    report = load(path)
    current = synth.source_sha256()
    assert report["source_sha256"] == current, (
        f"{path.name} was made from other sources than the current fpga_bitstream/rtl/*.sv and synth.py "
        f"({report['source_sha256'][:12]} != {current[:12]}): run the synthesis again, {rerun(report)}, "
        "and commit the new report"
    )
    assert report["hashed_files"] == list(synth.snapshot()), f"the hashed files changed: {rerun(report)}"


def check_parameters(path: Path) -> None:
    report = load(path)
    configs = synth.configurations()
    assert path.stem == report["config"] and report["config"] in configs, f"{path.name}: no such configuration"
    assert report["parameters"] == configs[report["config"]].verilog_parameters(), (
        f"{path.name}: the parameters of {report['config']} changed in fpgacspd.rtl.params: {rerun(report)}"
    )


def test_the_hash_covers_the_rtl_and_the_script() -> None:
    files = synth.snapshot()
    assert "synth/synth.py" in files and any(name.startswith("rtl/") and name.endswith(".sv") for name in files)
    assert list(files) == [*sorted(n for n in files if n.startswith("rtl/")), "synth/synth.py"]
    edited = dict(files, **{"synth/synth.py": files["synth/synth.py"] + b"\n"})
    assert synth.source_sha256(edited) != synth.source_sha256(files)


def test_nextpnr_log_parsing() -> None:
    log = (
        "Info: Device utilisation:\n"
        "Info: \t        TRELLIS_COMB:    1443/  83640     1%\n"
        "Info: Max frequency for clock 'clk': 49.70 MHz (FAIL at 100.00 MHz)\n"
        "Warning: Max frequency for clock 'clk': 50.41 MHz (FAIL at 100.00 MHz)\n"
    )
    parsed = synth.parse_nextpnr(log)
    assert parsed["fmax_mhz"] == {"clk": 50.41}  # the last one: after routing
    assert parsed["utilisation"] == {"TRELLIS_COMB": {"used": 1443, "available": 83640}}
    assert synth.clock_fmax(parsed["fmax_mhz"]) == 50.41
    assert synth.clock_fmax({"$glbnet$clk": 81.0}) == 81.0
