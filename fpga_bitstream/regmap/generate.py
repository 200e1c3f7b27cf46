"""Generate everything that derives from the register map (``fpgacsp.rdl``), or check that it is current.

Outputs (the one source is ``fpgacsp.rdl``):

- ``daemon/src/fpgacspd/device/_regmap.py``: the driver's and the device model's register definitions
  (built, git-ignored, like the protobuf stubs);
- ``fpga_bitstream/generated/fpgacsp_regs.sv`` and ``fpgacsp_regs_pkg.sv``: the RTL register block
  (PeakRDL-regblock, AXI4-Lite), and ``fpgacsp_regs.h``: the C header (PeakRDL-cheader) (built, git-ignored);
- ``docs/regmap.md``: the register reference (PeakRDL-markdown). Committed, so the documentation reads
  without a build; ``tests/test_generated.py`` fails when it or any built output is stale.

Usage: ``python fpga_bitstream/regmap/generate.py [--out ROOT]`` writes under ROOT (default: the repository).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

from peakrdl_cheader.exporter import CHeaderExporter
from peakrdl_markdown import MarkdownExporter
from peakrdl_regblock import RegblockExporter
from peakrdl_regblock.cpuif.axi4lite import AXI4Lite_Cpuif_flattened
from peakrdl_regblock.udps import ALL_UDPS
from systemrdl import RDLCompiler
from systemrdl.node import AddrmapNode, FieldNode, RegNode

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "fpga_bitstream" / "regmap" / "fpgacsp.rdl"
BAR0_SIZE = 4096  # the BAR the card exposes; the map itself is smaller and the rest reads 0
PYTHON_OUT = Path("daemon/src/fpgacspd/device/_regmap.py")
RTL_DIR = Path("fpga_bitstream/generated")
DOC_OUT = Path("docs/regmap.md")
OUTPUTS = (
    PYTHON_OUT,
    RTL_DIR / "fpgacsp_regs.sv",
    RTL_DIR / "fpgacsp_regs_pkg.sv",
    RTL_DIR / "fpgacsp_regs.h",
    DOC_OUT,
)


def compile_map() -> AddrmapNode:
    rdlc = RDLCompiler()
    for udp in ALL_UDPS:  # properties PeakRDL-regblock understands (none used yet; it asks for them)
        rdlc.register_udp(udp)
    rdlc.compile_file(str(SOURCE))
    return rdlc.elaborate().top


def generate(out_root: Path) -> None:
    top = compile_map()
    (out_root / RTL_DIR).mkdir(parents=True, exist_ok=True)
    (out_root / DOC_OUT).parent.mkdir(parents=True, exist_ok=True)
    (out_root / PYTHON_OUT).parent.mkdir(parents=True, exist_ok=True)
    (out_root / PYTHON_OUT).write_text(python_module(top), encoding="utf-8")
    RegblockExporter().export(
        top, str(out_root / RTL_DIR), cpuif_cls=AXI4Lite_Cpuif_flattened,
        module_name="fpgacsp_regs", package_name="fpgacsp_regs_pkg",
    )  # fmt: skip
    CHeaderExporter().export(top, str(out_root / RTL_DIR / "fpgacsp_regs.h"))
    MarkdownExporter().export(top, str(out_root / DOC_OUT), input_files=[SOURCE.relative_to(REPO).as_posix()])


def stale_outputs(root: Path = REPO) -> list[str]:
    """The outputs under ``root`` that differ from a fresh generation (missing ones included)."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [
            str(rel) for rel in OUTPUTS
            if not (root / rel).exists() or (root / rel).read_bytes() != (Path(tmp) / rel).read_bytes()
        ]  # fmt: skip


def python_module(top: AddrmapNode) -> str:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    lines = [
        f'"""{top.get_property("name")}: generated from fpga_bitstream/regmap/fpgacsp.rdl (sha256 {digest}).',
        "",
        "Do not edit: run `make regmap`. One class per register: OFFSET, RESET and one Field per field.",
        '"""',
        "",
        "from typing import Final",
        "",
        "from .regdefs import Field",
        "",
        f"BAR0_SIZE: Final = {BAR0_SIZE:#x}",
        f"SOURCE_SHA256: Final = {digest!r}",
    ]
    names = []
    for reg in top.registers():
        names.append(reg.inst_name)
        lines += ["", "", *_register_class(reg)]
    lines += ["", "", f"REGISTERS: Final = ({', '.join(names)},)", ""]
    return "\n".join(lines)


def _register_class(reg: RegNode) -> list[str]:
    reset = sum(_reset(f) << f.lsb for f in reg.fields())
    fields = list(reg.fields())
    out = [
        f"class {reg.inst_name}:",
        f'    """{_one_line(reg.get_property("name"))}."""',
        "",
        f'    NAME: Final = "{reg.inst_name}"',
        f"    OFFSET: Final = {reg.absolute_address:#05x}",
        f"    RESET: Final = {reset:#010x}",
    ]
    out += [f"    {f.inst_name}: Final = {_field(f)}" for f in fields]
    out.append(f"    FIELDS: Final = ({''.join(f.inst_name + ', ' for f in fields).rstrip()})")
    return out


def _field(f: FieldNode) -> str:
    sw = f.get_property("sw").name
    onwrite = f.get_property("onwrite")
    flags = []
    if onwrite is not None:
        flags.append(f'onwrite="{onwrite.name}"')
    if f.get_property("singlepulse"):
        flags.append("singlepulse=True")
    extra = "".join(", " + x for x in flags)
    return f'Field("{f.inst_name}", {f.lsb}, {f.width}, "{sw}", {_reset(f):#x}{extra})'


def _reset(f: FieldNode) -> int:
    value = f.get_property("reset")
    if value is not None and not isinstance(value, int):
        raise ValueError(f"{f.get_path()}: reset must be a constant, not a reference")
    return value or 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO, help="root to write under (default: the repository)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if an output is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_outputs(args.out)
        for name in stale:
            print(f"stale: {name} (run `make regmap`)", file=sys.stderr)
        return 1 if stale else 0
    generate(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
