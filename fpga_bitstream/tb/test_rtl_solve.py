"""``rtl_solve`` writes what ``fpgacsp solve`` writes, byte for byte, for the same puzzles (4x4 and 9x9 mixed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def test_rtl_solve_writes_the_csv_of_fpgacsp_solve_for_the_same_puzzles(tmp_path: Path) -> None:
    lines = (REPO / "data" / "sudoku" / "forum_hardest_1106.csv").read_text().splitlines()
    puzzles = [line for line in lines if line and not line.startswith("#")][1:6]
    puzzles += ["1.3..2.......1.4", "12..34.........."]  # 4x4: another engine size; the second has several solutions
    source = tmp_path / "puzzles.txt"
    source.write_text("\n".join(puzzles) + "\n")
    sim_csv, rtl_csv, cycles_csv = tmp_path / "sim.csv", tmp_path / "rtl.csv", tmp_path / "cycles.csv"
    solve = [
        str(Path(sys.executable).parent / "fpgacsp"),
        "solve",
        str(source),
        "--target",
        "local",
        "--max-solutions",
        "2",
    ]
    subprocess.run([*solve, "--out", str(sim_csv)], check=True, capture_output=True)
    rtl = [sys.executable, str(HERE / "rtl_solve.py"), str(source), "--max-solutions", "2"]
    done = subprocess.run([*rtl, "--out", str(rtl_csv), "--cycles", str(cycles_csv)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert rtl_csv.read_text() == sim_csv.read_text()
    rows = cycles_csv.read_text().splitlines()
    assert rows[0] == "puzzle,cycles,sweeps" and len(rows) == len(puzzles) + 1
    assert all(int(r.split(",")[1]) > int(r.split(",")[2]) > 0 for r in rows[1:])
    assert "cycles per puzzle" in done.stderr
