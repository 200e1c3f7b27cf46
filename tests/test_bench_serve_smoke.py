"""Smoke test of the serving benchmark: ``bench/serve.py --quick`` runs end to end and reports real numbers.

The recorded results are only worth having if the machinery is right: every table row carries positive
figures, the daemon's answers were checked against the engine, no request failed, each target gets a
verdict, and the report names where and how it was produced.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def table(text: str, heading: str) -> list[list[str]]:
    """The body rows of the Markdown table under ``## heading``."""
    lines = text.split(f"## {heading}", 1)[1].splitlines()
    end = next((i for i, ln in enumerate(lines) if ln.startswith("## ")), len(lines))
    rows = [ln for ln in lines[:end] if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows[2:]]


def number(cell: str) -> float:
    return float(cell.replace(",", "").removesuffix("%"))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    out = tmp_path_factory.mktemp("bench") / "serve.md"
    proc = subprocess.run(
        [sys.executable, "bench/serve.py", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"benchmark failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out.read_text(encoding="utf-8"), proc.stdout


def test_throughput_rows_are_numeric_and_checked(report: tuple[str, str]) -> None:
    text, _ = report
    rows = table(text, "Throughput")
    assert [r[0] for r in rows] == ["1", "64", "1024"]
    for r in rows:
        assert all(number(c) > 0 for c in r[1:6]), r
        assert r[6] == "ok"


def test_load_and_latency_rows_stand_beside_the_bare_echo(report: tuple[str, str]) -> None:
    text, _ = report
    loads = table(text, "64 concurrent clients")
    assert [r[0].split(" (")[0] for r in loads] == [
        "bare grpc.aio echo",
        "batching on",
        "batching off",
        "bare grpc.aio echo, one stream per client",
        "streaming, batching on",
        "streaming, batching off",
    ]
    for r in loads:
        assert number(r[1]) > 0 and 0 < number(r[2]) <= number(r[3]) and number(r[4]) > 0, r
        assert number(r[6]) >= 1 and r[7] == "0", r
    assert number(loads[0][5]) == 1  # the echo against itself
    assert number(loads[3][5]) < number(loads[4][5])  # the streaming echo is the floor of streaming too
    lats = table(text, "Latency")
    assert [r[0] for r in lats] == [
        "bare grpc.aio echo, TCP",
        "default, TCP",
        "default, unix",
        "default, TCP, bare stub",
        "--max-delay-us 500, TCP",
    ]
    for r in lats:
        assert 0 < number(r[1]) <= number(r[3]) and number(r[7]) == 200, r
    assert number(lats[0][2]) == 1 and all(number(r[2]) > 1 for r in lats[1:4])  # nothing beats gRPC's floor
    assert all(number(r[6]) > 0 for r in lats[1:])  # the daemon's own timing of each answer


def test_register_path_and_recovery_rows(report: tuple[str, str]) -> None:
    text, _ = report
    paths = table(text, "Register path")
    assert [r[0] for r in paths] == ["1", "64", "1024"]
    for r in paths:
        assert number(r[1]) > 0 and number(r[2]) > 0 and r[5] == "ok", r
    recoveries = table(text, "Recovery")
    assert [r[0] for r in recoveries] == ["hang", "error", "corrupt", "drop_irq", "wedge"]
    for r in recoveries:
        assert number(r[2]) > 0 and r[6] == "correct", r
    by_fault = {r[0]: r for r in recoveries}
    # the batch that hung took at least the 100 ms job timeout: the hang was waited out (the recovery column,
    # that minus the median batch without a fault, can land a few ms under 100 when the retry runs faster)
    assert number(by_fault["hang"][2]) >= 100
    assert by_fault["drop_irq"][4] == "0" and by_fault["hang"][4] == "1"  # a lost interrupt needs no reset


def test_header_targets_and_stdout(report: tuple[str, str]) -> None:
    text, stdout = report
    for key in ("- Date:", "- Machine:", "load average", "- Software:", "grpcio", "- Commit:"):
        assert key in text
    assert "- Command: `python bench/serve.py --quick --out " in text
    targets = [ln for ln in text.splitlines() if ln.endswith(("**met**", "**not met**"))]
    assert len(targets) == 6
    assert "1.5x the echo's" in targets[0] and "CPU per request" in targets[1] and "at least 3x" in targets[2]
    assert "streaming mechanism" in targets[3] and targets[3].count("met**") == 2  # CPU and batching, each judged
    assert "at most 0.1 ms per batch-1 job" in targets[4] and "95% of the local engine" in targets[5]
    assert "none: every check passed" in text
    assert table(stdout, "Throughput") and len(table(stdout, "Throughput")) == len(table(text, "Throughput"))
