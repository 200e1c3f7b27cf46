"""``fpgacsp solve --target ADDRESS`` and ``fpgacsp status --target ADDRESS`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from fpgacsp import DeviceState, DeviceStatus, MethodStats, ProgramInfo, Stats
from fpgacsp.cli import format_status
from fpgacsp.problems import sudoku_program
from fpgacsp_proto import program_id

FPGACSP = Path(sys.executable).parent / "fpgacsp"
SUDOKU = Path(__file__).resolve().parents[2] / "data" / "sudoku"


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with DaemonProcess(unix_socket=True) as d:
        yield d


@pytest.fixture(scope="module")
def puzzle_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = (SUDOKU / "magictour_top1465.csv").read_text().splitlines()
    path = tmp_path_factory.mktemp("cli") / "magictour_30.csv"
    path.write_text("\n".join([ln for ln in lines if ln and not ln.startswith("#")][:30]) + "\n")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FPGACSP), *args], capture_output=True, text=True, timeout=120, check=False)


def test_solve_through_the_daemon_matches_local(daemon: DaemonProcess, puzzle_file: Path, tmp_path: Path) -> None:
    outputs: dict[str, str] = {}
    for target in ("local", daemon.address, daemon.unix_address):
        out = tmp_path / f"out-{len(outputs)}.csv"
        proc = run("solve", str(puzzle_file), "--target", target, "--out", str(out), "--batch", "7")
        assert proc.returncode == 0, proc.stderr
        assert "solved 30, unsat 0, limit 0" in proc.stderr and "30 of 30 agree" in proc.stderr
        outputs[target] = out.read_text()
    assert len(set(outputs.values())) == 1  # the same lines, in the same order, whatever the target
    assert len(outputs["local"].splitlines()) == 30


def test_status_prints_device_programs_and_queue(daemon: DaemonProcess, puzzle_file: Path) -> None:
    assert run("solve", str(puzzle_file), "--target", daemon.address).returncode == 0  # registers the 9x9 program
    proc = run("status", "--target", daemon.unix_address)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert f"fpgacsp status of {daemon.unix_address}" in text
    for fragment in ("backend    sim", "state      READY", "uptime", "batches", "queue      0 requests waiting"):
        assert fragment in text, text
    assert "max_batch 1,024" in text
    header = next(line for line in text.splitlines() if line.strip().startswith("ID"))
    assert header.split() == ["ID", "N", "D", "CONSTRAINTS", "PINNED", "SOLVES", "LAST", "USED"]
    row = next(line for line in text.splitlines() if line.strip().startswith(program_id(sudoku_program())[:12]))
    cells = row.split()
    assert cells[1:5] == ["81", "9", "27", "no"] and int(cells[5]) >= 2 and "ago)" in row

    doc = json.loads(run("status", "--target", daemon.address, "--json").stdout)
    assert doc["device"]["state"] == "READY" and doc["device"]["backend"] == "sim"
    assert program_id(sudoku_program()) in {p["program_id"] for p in doc["programs"]}
    assert any(m["method"] == "Solve" and m["code"] == "OK" for m in doc["stats"]["requests"])


def test_unreachable_daemon_exits_2_with_a_clear_message(puzzle_file: Path) -> None:
    dead = "127.0.0.1:1"  # nothing listens on port 1: connection refused
    for args in (("status", "--target", dead), ("solve", str(puzzle_file), "--target", dead)):
        proc = run(*args)
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"fpgacsp: error: cannot reach the daemon at {dead}:"), proc.stderr
        assert "Traceback" not in proc.stderr
    proc = run("status", "--target", "")
    assert proc.returncode == 2 and "target: expected" in proc.stderr
    proc = run("status", "--timeout", "0")
    assert proc.returncode == 2 and "expected a positive number of seconds" in proc.stderr


def test_status_table_formatting() -> None:
    device = DeviceStatus("engine", "fast core, 2 threads", DeviceState.DRAINING, "0.1.0", 90_061, 10, 2000, 3, 4, 1, 0,
                          2, 5, 1024, 500, card_nodes=123_456, busy_ms=14_200)  # fmt: skip
    programs = [
        ProgramInfo("a" * 64, 81, 9, 27, 1149, True, 12, 1_000, 1_700_000_000_000),
        ProgramInfo("b" * 64, 1_000, 64, 12_345, 99, False, 0, 2_000, 0),
    ]
    stats = Stats((MethodStats("Solve", "OK", 12), MethodStats("Solve", "RESOURCE_EXHAUSTED", 3)), 10, 2000, 200.0,
                  1.5, 5, 2, 1, 0, 3)  # fmt: skip
    text = format_status("host:1", device, programs, stats, now_ms=1_700_000_090_000)
    lines = text.splitlines()
    assert "  state      DRAINING" in lines and "  uptime     1d 1h 01m 01s" in lines
    assert "  queue      5 requests waiting (max_batch 1,024, max_delay_us 500)" in lines
    assert "  device     busy for 14.2 s, card at 123,456 nodes" in lines  # a long job: slow while the count climbs
    assert "  solves     OK 12, RESOURCE_EXHAUSTED 3" in lines
    assert "programs (2 loaded)" in lines
    table = lines[lines.index("programs (2 loaded)") + 1 :]
    assert [row.split()[:6] for row in table] == [
        ["ID", "N", "D", "CONSTRAINTS", "PINNED", "SOLVES"],
        ["aaaaaaaaaaaa", "81", "9", "27", "yes", "12"],
        ["bbbbbbbbbbbb", "1,000", "64", "12,345", "no", "0"],
    ]
    assert table[1].endswith("2023-11-14 22:13:20Z (1m 30s ago)") and table[2].endswith("never")
    # columns line up: numbers right-aligned under their header, the last column left-aligned
    assert table[0].index("SOLVES") + len("SOLVES") == table[1].index(" 12 ") + 3 == table[2].index(" 0 ") + 2
    assert table[0].index("LAST USED") == table[1].index("2023-") == table[2].index("never")
