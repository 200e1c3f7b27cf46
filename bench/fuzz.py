"""Fuzz soak: hostile requests (bench/_fuzz.py) against a real fpgacspd, valid ones checked between them.

``python bench/fuzz.py`` sends more than 100,000 requests (``--count`` 102,000 generated, less duplicates): random
bytes to every method, and structurally valid but wrong programs and Solve requests built from the protos with
hypothesis (sizes, widths, huge N and D, D = 0 and 65, unknown ids, wrong priority lengths, batch 0 and enormous,
extreme limits, duplicate variables, giant TABLE2 rows, LINEAR coefficients near overflow). Every 50th request is
followed by a valid Solve whose answer must equal the local engine's. The report gives the answers by status code,
the checks, the daemon's RSS and thread count before and after, and whether it is still up; targets: 0 UNKNOWN, 0
INTERNAL, 0 wrong, the daemon up, RSS growth bounded (under 100 MB). Written to ``--out`` (default
``bench/results/fuzz.md``); exit status 1 when a target is missed. ``tests/e2e/test_e2e_fuzz.py`` runs 3,000 of the
same requests in ``make test``.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable for `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpgacsp.problems import load_puzzle_file, parse_sudoku, sudoku_domains, sudoku_program
from fpgacspd.engine import FastEngine

from bench._fuzz import run_fuzz
from bench._report import REPO, git_commit, machine, versions
from bench._serving import Daemon

RSS_GROWTH_MB = 100.0


def resources(pid: int) -> tuple[float, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    # hypothesis skips about 1% of its examples as duplicates: asking for 102,000 sends more than 100,000
    p.add_argument(
        "--count",
        type=int,
        default=102_000,
        help="hostile requests hypothesis generates (about 1%% fewer are sent: duplicates)",
    )
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fuzz.md", help="Markdown report")
    args = p.parse_args(argv)
    program = sudoku_program()
    grids = [parse_sudoku(r.puzzle) for r in load_puzzle_file(REPO / "data" / "sudoku" / "kaggle_10k.csv", 256)]
    domains = sudoku_domains(np.stack(grids))
    want = FastEngine(threads=1).solve(program, domains)
    started = time.perf_counter()
    with Daemon() as daemon:
        rss0, threads0 = resources(daemon.pid)
        result = run_fuzz(
            daemon.address, args.count, program, domains, want,
            progress=lambda n: print(f"  {n:,} sent ({time.perf_counter() - started:.0f} s)", file=sys.stderr),
        )  # fmt: skip
        rss1, threads1 = resources(daemon.pid)
        alive = daemon._proc is not None and daemon._proc.poll() is None
    misses = [f"{result.codes[c]} {c}" for c in ("UNKNOWN", "INTERNAL") if result.codes[c]]
    misses += [f"{result.wrong} of {result.checked} valid requests answered wrong"] if result.wrong else []
    misses += ["the daemon died"] if not alive else []
    misses += [f"RSS grew {rss1 - rss0:.0f} MB"] if rss1 - rss0 > RSS_GROWTH_MB else []
    words = sys.argv[1:] if argv is None else list(argv)
    lines = [
        "# Fuzz soak: hostile requests against a real daemon, valid ones checked between them",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}; commit {git_commit()}",
        f"- Machine: {machine()}",
        f"- Software: {versions(['grpcio', 'protobuf', 'hypothesis'])}",
        f"- Command: `python bench/fuzz.py{''.join(' ' + shlex.quote(a) for a in words)}` "
        f"({time.perf_counter() - started:.0f} s; hypothesis derandomized: the same requests every run)",
        "",
        "| requests | answers by status code | valid requests checked | wrong | RSS before / after "
        "| threads before / after | daemon up | requests/s |",
        "|---:|---|---:|---:|---:|---:|---|---:|",
        f"| {result.sent:,} | {', '.join(f'{c} {n:,}' for c, n in result.codes.most_common())} | {result.checked:,} "
        f"| {result.wrong} | {rss0:.0f} / {rss1:.0f} MB | {threads0} / {threads1} | {'yes' if alive else 'NO'} "
        f"| {result.sent / result.seconds:,.0f} |",
        "",
        "## Targets",
        "",
        *([f"- missed: {m}" for m in misses] or [
            f"- all met: 0 UNKNOWN, 0 INTERNAL, 0 wrong, the daemon up, RSS growth under {RSS_GROWTH_MB:.0f} MB."
        ]),
    ]  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
