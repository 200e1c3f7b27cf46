"""The register map: one source (fpga_bitstream/regmap/fpgacsp.rdl), every generated output current and agreeing.

- every output of ``make regmap`` (the driver's Python definitions, the RTL register block, the C header,
  docs/regmap.md) equals a fresh generation, so an .rdl edit without ``make regmap`` fails here;
- the map is well formed for the driver: aligned, unique, inside BAR0, fields inside their register;
- the RTL register block passes Verilator's lint, and the C header compiles and agrees with the Python
  definitions on every register offset and field mask (the hardware engineer's and the driver's view).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from fpgacspd.device import _regmap as regs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fpga_bitstream" / "regmap"))
import generate  # noqa: E402  (the generator is a script in fpga_bitstream/regmap, not a package)

GENERATED = REPO / "fpga_bitstream" / "generated"


def test_generated_outputs_are_current() -> None:
    stale = generate.stale_outputs(REPO)
    assert not stale, f"stale or missing: {stale}; run make regmap"


def test_python_definitions_carry_the_source_digest() -> None:
    import hashlib

    assert hashlib.sha256(generate.SOURCE.read_bytes()).hexdigest()[:16] == regs.SOURCE_SHA256


def test_the_map_is_well_formed() -> None:
    offsets = [r.OFFSET for r in regs.REGISTERS]
    assert len(set(offsets)) == len(offsets) and all(o % 4 == 0 and o + 4 <= regs.BAR0_SIZE for o in offsets)
    names = [r.NAME for r in regs.REGISTERS]
    assert len(set(names)) == len(names)
    for r in regs.REGISTERS:
        masks = [f.mask for f in r.FIELDS]
        assert all(m >> 32 == 0 for m in masks), r.NAME
        assert all(a & b == 0 for i, a in enumerate(masks) for b in masks[i + 1 :]), f"{r.NAME}: fields overlap"
        assert sum(f.reset << f.lsb for f in r.FIELDS) == r.RESET
    assert int.from_bytes(b"FCSP", "big") == regs.ID.RESET


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: run scripts/install-system-deps.sh (make system-deps)"
    return path


def test_rtl_register_block_passes_verilator_lint(tmp_path: Path) -> None:
    sources = [GENERATED / "fpgacsp_regs_pkg.sv", GENERATED / "fpgacsp_regs.sv"]
    cmd = [tool("verilator"), "--lint-only", "--top-module", "fpgacsp_regs", *map(str, sources)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_c_header_agrees_with_the_python_definitions(tmp_path: Path) -> None:
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "fpgacsp_regs.h"', "int main(void) {"]
    for r in regs.REGISTERS:
        lines.append(f'printf("{r.NAME} %zu\\n", offsetof(fpgacsp_regs_t, {r.NAME}));')
        for f in r.FIELDS:
            macro = f"FPGACSP_REGS__{r.NAME}__{f.name}"
            lines.append(f'printf("{r.NAME}.{f.name} %llu %llu\\n", (unsigned long long){macro}_bm, '
                         f"(unsigned long long){macro}_reset);")  # fmt: skip
    lines += ["return 0;", "}"]
    probe = tmp_path / "probe.c"
    probe.write_text("\n".join(lines), encoding="utf-8")
    exe = tmp_path / "probe"
    build = [tool("gcc"), "-std=c11", "-Wall", "-Werror", "-I", str(GENERATED), str(probe), "-o", str(exe)]
    done = subprocess.run(build, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    seen = dict(line.split(" ", 1) for line in subprocess.check_output([str(exe)], text=True).splitlines())
    for r in regs.REGISTERS:
        assert int(seen[r.NAME]) == r.OFFSET, r.NAME
        for f in r.FIELDS:
            assert seen[f"{r.NAME}.{f.name}"] == f"{f.mask} {f.reset}", f"{r.NAME}.{f.name}"


def test_docs_list_every_register_at_its_offset() -> None:
    table = (REPO / "docs" / "regmap.md").read_text(encoding="utf-8").replace(" ", "")
    for reg in regs.REGISTERS:
        assert f"|0x{reg.OFFSET:03X}|{reg.NAME}|" in table, reg.NAME
