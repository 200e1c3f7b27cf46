"""The ``fpgacsp solve`` command: output order and notation, statuses, summary, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from fpgacsp.cli import main
from fpgacsp.problems import check_sudoku_solution, load_puzzle_file, parse_sudoku

DATA = Path(__file__).resolve().parents[1] / "data"
MAGICTOUR = DATA / "sudoku" / "magictour_top1465.csv"
SERG = DATA / "sudoku" / "serg_benchmark.csv"
FPGACSP = Path(sys.executable).parent / "fpgacsp"

WIKI_PUZZLE = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
WIKI_SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
PUZZLE_4 = ".2..4....1.....3"
SOLUTION_4 = "1234432131422413"
# two 5s in the first row: propagation empties a domain at the root
UNSAT_9 = "55" + "." * 79


def head_lines(src: Path, dst: Path, count: int) -> Path:
    """The first ``count`` puzzle lines of ``src`` (its comment lines kept) written to ``dst``."""
    lines = src.read_text().splitlines()
    comments = [ln for ln in lines if ln.startswith("#")]
    puzzles = [ln for ln in lines if ln and not ln.startswith("#")][:count]
    dst.write_text("\n".join(comments + puzzles) + "\n")
    return dst


def read_csv(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def magictour_50(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return head_lines(MAGICTOUR, tmp_path_factory.mktemp("mt") / "magictour_50.csv", 50)


def check_against_records(puzzle_file: Path, out: Path) -> None:
    records = load_puzzle_file(puzzle_file)
    rows = read_csv(out)
    assert len(rows) == len(records)
    for rec, row in zip(records, rows, strict=True):
        assert len(row) == 5
        assert row[0] == rec.puzzle  # input order
        assert row[1] == rec.solution
        assert row[2] == "solved"
        assert int(row[3]) >= 1 and row[4] == "1"


def test_solve_in_process(magictour_50: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.csv"
    assert main(["solve", str(magictour_50), "--target", "local", "--out", str(out), "--batch", "16"]) == 0
    check_against_records(magictour_50, out)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "50 puzzles" in captured.err
    assert "solved 50, unsat 0, limit 0" in captured.err
    assert "puzzles/s" in captured.err and "mean nodes" in captured.err
    assert "recorded solutions: 50 of 50 agree" in captured.err


def test_solve_console_script(magictour_50: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [str(FPGACSP), "solve", str(magictour_50), "--target", "local", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    check_against_records(magictour_50, out)
    assert proc.stdout == ""
    assert "50 of 50 agree" in proc.stderr


def test_client_import_does_not_load_the_daemon() -> None:
    code = "import sys, fpgacsp, fpgacsp.cli; assert not any(m.startswith('fpgacspd') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_mixed_sizes_unsat_and_notation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "mixed.txt"
    zero_blanks = WIKI_PUZZLE.replace(".", "0")
    src.write_text(f"{PUZZLE_4}\n{UNSAT_9}  # no solution\n{zero_blanks}\n{WIKI_PUZZLE},{WIKI_SOLUTION},1\n")
    assert main(["solve", str(src), "--out", "-"]) == 0
    captured = capsys.readouterr()
    rows = [line.split(",") for line in captured.out.splitlines()]
    assert rows == [
        [PUZZLE_4, SOLUTION_4, "solved", rows[0][3], "1"],
        [UNSAT_9, UNSAT_9, "unsat", rows[1][3], "0"],
        [zero_blanks, WIKI_SOLUTION, "solved", rows[2][3], "1"],
        [WIKI_PUZZLE, WIKI_SOLUTION, "solved", rows[3][3], "1"],
    ]
    assert "solved 3, unsat 1, limit 0" in captured.err
    assert "1 of 1 agree" in captured.err


def test_propagate_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = head_lines(MAGICTOUR, tmp_path / "mt.csv", 20)
    with src.open("a") as f:
        f.write(f"{WIKI_PUZZLE.replace('.', '0')},{WIKI_SOLUTION},1\n{UNSAT_9},,0\n")
    out = tmp_path / "out.csv"
    assert main(["solve", str(src), "--mode", "propagate", "--out", str(out)]) == 0
    rows = read_csv(out)
    records = load_puzzle_file(src)
    assert len(rows) == 22
    for rec, row in zip(records[:20], rows[:20], strict=True):
        assert row[2] in ("fixpoint", "solved")
        assert len(row[1]) == 81
        # every given stays, every fixed cell matches the recorded solution
        assert all(p == "." or p == r for p, r in zip(rec.puzzle, row[1], strict=True))
        assert all(r == "." or r == s for r, s in zip(row[1], rec.solution or "", strict=True))
    assert rows[20][1:3] == [WIKI_SOLUTION, "solved"]  # naked and hidden singles solve it
    assert rows[21][1:3] == [UNSAT_9, "conflict"]
    err = capsys.readouterr().err
    assert "fixpoint" in err and "conflict 1" in err and "22 of 22 agree" in err


def test_propagate_keeps_zero_blanks(tmp_path: Path) -> None:
    puzzle = load_puzzle_file(MAGICTOUR, limit=1)[0].puzzle.replace(".", "0")
    src = tmp_path / "p.txt"
    src.write_text(puzzle + "\n")
    out = tmp_path / "out.csv"
    assert main(["solve", str(src), "--mode", "propagate", "--out", str(out)]) == 0
    result = read_csv(out)[0][1]
    assert "0" in result and "." not in result
    assert parse_sudoku(result).tolist() == parse_sudoku(result.replace("0", ".")).tolist()


def test_node_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = head_lines(DATA / "sudoku" / "forum_hardest_1106.csv", tmp_path / "hard.csv", 5)
    out = tmp_path / "out.csv"
    assert main(["solve", str(src), "--node-limit", "1", "--out", str(out)]) == 0
    assert {row[2] for row in read_csv(out)} == {"limit"}
    assert all(row[3] == "1" for row in read_csv(out))
    err = capsys.readouterr().err
    assert "limit 5" in err and "0 of 5 agree" in err and "CONTRADICT" not in err


def test_max_solutions_on_multi_solution_puzzles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = head_lines(SERG, tmp_path / "serg.csv", 20)
    out = tmp_path / "out.csv"
    assert main(["solve", str(src), "--max-solutions", "2", "--out", str(out)]) == 0
    rows = read_csv(out)
    assert all(row[2] == "solved" and row[4] == "2" for row in rows)
    assert all(check_sudoku_solution(parse_sudoku(row[1])) for row in rows)
    assert "20 of 20 agree" in capsys.readouterr().err


def test_wrong_recorded_solution_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "wrong.csv"
    src.write_text(f"{PUZZLE_4},{SOLUTION_4[::-1]},1\n")
    assert main(["solve", str(src)]) == 1
    assert "0 of 1 agree, 1 CONTRADICT" in capsys.readouterr().err


def test_unreachable_daemon_exits_2(magictour_50: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Port 1 on loopback is never a daemon (50051 might be a real one on a developer's machine)."""
    assert main(["solve", str(magictour_50), "--target", "127.0.0.1:1", "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the daemon at 127.0.0.1:1" in err


def test_bad_line_exits_2_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "bad.txt"
    src.write_text(f"# c\n{PUZZLE_4}\n{PUZZLE_4[:-1]}x\n")
    assert main(["solve", str(src)]) == 2
    err = capsys.readouterr().err
    assert "bad.txt:3:" in err and "'x'" in err


def test_missing_file_and_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err
    src = tmp_path / "p.txt"
    src.write_text(PUZZLE_4 + "\n")
    assert main(["solve", str(src), "--out", str(tmp_path)]) == 2  # a directory is no output file
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["solve", str(tmp_path / "x"), "--batch", "0"])
    assert exc.value.code == 2


def test_a_file_without_puzzles_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing to solve is a wrong or empty file, not a success (it used to exit 0)."""
    for name, text in (("empty.txt", ""), ("comments.txt", "# nothing\n\n"), ("header.csv", "puzzle,solution\n")):
        src = tmp_path / name
        src.write_text(text)
        out = tmp_path / "out.csv"
        assert main(["solve", str(src), "--out", str(out)]) == 2
        assert f"{src}: no puzzles found" in capsys.readouterr().err
        assert not out.exists()  # checked before the output is opened


def test_a_binary_file_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "puzzles.gz"
    src.write_bytes(f"{PUZZLE_4}\n".encode() + bytes([0x1F, 0x8B, 0x08, 0x80, 0xFF]))
    assert main(["solve", str(src)]) == 2
    err = capsys.readouterr().err
    assert f"{src}: not a text file (byte 0x8b is not UTF-8)" in err and "codec" not in err


def test_missing_engine_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from fpgacsp import LocalSolver

    monkeypatch.setitem(sys.modules, "fpgacspd.engine", None)
    with pytest.raises(ImportError, match=r"pip install 'fpgacsp\[local\]'"):
        LocalSolver()


def test_a_batch_the_target_fails_is_marked_and_every_other_answer_is_still_written(
    magictour_50: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, one batch ending INTERNAL aborted the whole file and lost the answers already had."""
    import fpgacsp.cli as cli
    from fpgacsp import ServerError, connect

    real = connect("local", threads=1)
    calls = []

    class OneBatchFails:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def solve(self, *args: Any, **kwargs: Any) -> object:
            calls.append(1)
            if len(calls) == 3:  # the warm-up, batch 1, then batch 2 (puzzles 10-19) fails
                raise ServerError("device: job_error (after 2 resets and retries)", grpc.StatusCode.INTERNAL, "Solve")
            return real.solve(*args, **kwargs)

    monkeypatch.setattr(cli, "_connect", lambda target, timeout, args=None: OneBatchFails())
    out = tmp_path / "out.csv"
    code = main(["solve", str(magictour_50), "--batch", "10", "--out", str(out)])
    assert code == 3
    rows = read_csv(out)
    assert len(rows) == 50
    assert [r[2] for r in rows[10:20]] == ["error"] * 10 and all(
        r[1] == "" and r[3:] == ["0", "0"] for r in rows[10:20]
    )
    assert all(r[2] == "solved" for r in rows[:10] + rows[20:])
    err = capsys.readouterr().err
    assert "fpgacsp solve: 50 puzzles" in err and "solved 40," in err
    assert "NOT ANSWERED: 10 of 50 puzzles" in err
    assert "ServerError: Solve failed with INTERNAL: device: job_error" in err


def test_threads_sets_the_local_engines_threads_and_changes_no_answer(
    magictour_50: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fpgacsp._local_client as local_client

    made: list[int | None] = []
    real = local_client.LocalClient.__init__

    def spy(self: local_client.LocalClient, **kw: Any) -> None:
        real(self, **kw)
        made.append(self._solver._engine.threads)  # the engine's own count, not only what was asked

    monkeypatch.setattr(local_client.LocalClient, "__init__", spy)
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert main(["solve", str(magictour_50), "--threads", "1", "--out", str(one)]) == 0
    assert main(["solve", str(magictour_50), "--threads", "2", "--out", str(two)]) == 0
    assert made == [1, 2]
    assert one.read_text() == two.read_text()


def test_threads_with_a_daemon_target_is_a_usage_error(magictour_50: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", str(magictour_50), "--target", "127.0.0.1:1", "--threads", "2"]) == 2
    assert "--threads: only for --target local" in capsys.readouterr().err
