"""Smoke test of the soak: ``bench/soak.py --quick`` runs everything hostile at once against a real daemon.

The recorded soak is only worth having if the machinery is right: every kind of caller really called (load,
fuzz, long job), the huge registration was refused over the limit and accepted at it, the slowloris was closed by
the server, nothing was lost or wrong, the fuzz never got UNKNOWN or INTERNAL, the long jobs ended at their
deadline, and SIGTERM exited 0. The latency target (status under 100 ms) is the soak's own verdict, not a test:
a shared CI machine says nothing reliable about milliseconds.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("bench") / "soak.md"
    proc = subprocess.run(
        [sys.executable, "bench/soak.py", "--quick", "--clients", "4", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1) and out.exists(), (
        f"the soak crashed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return out.read_text(encoding="utf-8")


def row(text: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith("| combined |"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_every_caller_called_and_nothing_was_lost_or_wrong(report: str) -> None:
    cells = row(report)
    answers = cells[2]
    load, fuzz, long = (re.search(rf"{who}: ([^;]*)", answers).group(1) for who in ("load", "fuzz", "long"))  # type: ignore[union-attr]
    assert "OK" in load and "INVALID_ARGUMENT" in fuzz, answers
    # a long search ends at its deadline, unless a fuzz caller's valid Admin.Reset aborted it first (the fuzz mix
    # includes Reset; with the few long jobs of a quick run, every one of them can meet a reset): nothing else
    before_stop = re.sub(r" \(after SIGTERM:.*", "", long)
    assert before_stop and set(re.findall(r"[A-Z_]{3,}", before_stop)) <= {"DEADLINE_EXCEEDED", "UNAVAILABLE"}, long
    if "UNAVAILABLE" in before_stop:
        why = re.search(r"long job UNAVAILABLE before SIGTERM: ([^;]*);", report)
        reset = r"\d+ x 'device: the job was aborted for an operator's reset \(Admin\.Reset\)'"
        assert why is not None and re.fullmatch(reset, why.group(1)), why
    assert "UNKNOWN" not in fuzz and "INTERNAL" not in fuzz and "client:" not in answers, answers
    assert (cells[3], cells[4]) == ("0", "0"), f"lost {cells[3]}, wrong {cells[4]}"
    assert float(cells[5].removesuffix(" s")) <= 0.5, "a call ran past its own deadline"
    assert re.fullmatch(r"exit 0 in \d+\.\d s", cells[9]), cells[9]
    assert "a caller crashed" not in report


def test_the_huge_registration_and_the_slowloris_ran(report: str) -> None:
    assert re.search(r"100,001 NEQ: RESOURCE_EXHAUSTED in \d\.\d+ s; 100,000 NEQ: OK in", report), report
    closed = re.search(r"slowloris connections closed by the server: ([\d,]+)", report)
    assert closed and int(closed.group(1).replace(",", "")) > 0
    books = re.search(r"submitted (\d+), answered (\d+)", report)
    assert books and books.group(1) == books.group(2)
