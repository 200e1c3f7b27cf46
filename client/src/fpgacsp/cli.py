"""The ``fpgacsp`` command line: ``fpgacsp solve FILE`` solves a Sudoku puzzle file and reports;
``fpgacsp status`` shows a daemon's device, programs and queue.

Both take ``--target``: ``local`` (the in-process engine; the default of ``solve``), ``HOST:PORT`` or
``unix:///path.sock`` (a daemon, through :func:`fpgacsp.connect`; the default of ``status`` is
``localhost:50051``).

Output (``--out``): one CSV line per puzzle, in input order, no header::

    puzzle,result,status,nodes,solutions

``result`` is written in the puzzle's own notation (its blank character, its letter case): the solution
when solved, the cells fixed at the node limit or the propagation fixpoint (blanks elsewhere) for
``limit`` and ``fixpoint``, and the puzzle itself for ``unsat`` and ``conflict``. Without ``--out`` only
the summary is printed (to stderr); ``--out -`` writes the CSV to stdout.

A batch the target fails to answer (after the client's own retries: an ``INTERNAL`` Solve is sent again twice,
since solving is pure) does not lose the rest: every answered puzzle is written, and each puzzle of the failed
batch gets the line ``puzzle,,error,0,0``; the summary says how many and why, and the exit code is 3.

Exit codes: 0 success; 1 some result contradicts the solution recorded in the file (a wrong answer,
not a node-limit stop); 2 bad usage or input (unreadable file, bad line, unreachable or unavailable
target); 3 the target failed a call it received (queue full, deadline exceeded, internal error), also when
it failed only some batches (their puzzles are marked ``error``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TextIO

import numpy as np
from fpgacsp_proto.bitset import singleton_values
from fpgacsp_proto.isa import Mode, Status
from fpgacsp_proto.limits import DEFAULT_NODE_LIMIT

from ._base import DEFAULT_TARGET, DEFAULT_TIMEOUT, LOCAL_TARGET, Client
from ._channel import TLS
from ._client import connect
from ._errors import FpgacspError, UnavailableError
from ._types import DeviceStatus, ProgramInfo, Stats
from .problems.sudoku import (
    BLANKS,
    PuzzleRecord,
    box_for_cells,
    check_sudoku_solution,
    format_sudoku,
    load_puzzle_file,
    parse_sudoku,
    sudoku_domains,
    sudoku_program,
)

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_TARGET_FAILED = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe
DEFAULT_BATCH = 4096


@dataclass(frozen=True)
class Outcome:
    """One puzzle's answer: status, counts, and the cell values (-1 where not fixed)."""

    status: Status
    nodes: int
    solutions: int
    values: np.ndarray


@dataclass(frozen=True)
class Failed:
    """A puzzle whose batch the target did not answer: the error it gave."""

    error: FpgacspError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fpgacsp`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except _UsageError as exc:
        print(f"fpgacsp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UnavailableError as exc:
        print(f"fpgacsp: error: cannot reach the daemon at {args.target}: {exc.details}", file=sys.stderr)
        return EXIT_USAGE
    except FpgacspError as exc:
        print(f"fpgacsp: error: {args.target}: {exc}", file=sys.stderr)
        return EXIT_TARGET_FAILED
    except BrokenPipeError:
        # `fpgacsp solve F --out - | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fpgacsp", description="fpgacsp constraint-propagation client")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    solve = sub.add_parser(
        "solve",
        help="solve a Sudoku puzzle file",
        description="Solve every puzzle of a file (tdoku one-line grids or puzzle,solution[,nsol] CSV; any size).",
        epilog="Without --out only the summary is printed (stderr); '--out -' writes the CSV lines to stdout.",
    )
    solve.add_argument("file", metavar="FILE", help="puzzle file")
    solve.add_argument(
        "--target",
        default=LOCAL_TARGET,
        metavar="ADDRESS",
        help="where to solve: 'local' (in-process engine; default), HOST:PORT or unix:///PATH (a daemon)",
    )
    solve.add_argument(
        "--mode",
        choices=[m.name.lower() for m in (Mode.SOLVE, Mode.PROPAGATE)],
        default=Mode.SOLVE.name.lower(),
        help="search or propagate only",
    )
    solve.add_argument("--out", metavar="OUT", help="write 'puzzle,result,status,nodes,solutions' lines here")
    solve.add_argument(
        "--node-limit", type=_positive, default=DEFAULT_NODE_LIMIT, metavar="N", help="search nodes per puzzle"
    )
    solve.add_argument(
        "--max-solutions", type=_positive, default=1, metavar="K", help="count solutions up to K (2: uniqueness)"
    )
    solve.add_argument("--batch", type=_positive, default=DEFAULT_BATCH, metavar="B", help="puzzles per engine call")
    solve.add_argument("--limit", type=_positive, default=None, metavar="N", help="read only the first N puzzles")
    solve.add_argument(
        "--threads",
        type=_positive,
        default=None,
        metavar="N",
        help="--target local: engine threads (default: one per core); a daemon's own are its --threads",
    )
    _add_timeout(solve)
    solve.set_defaults(func=cmd_solve)
    status = sub.add_parser(
        "status",
        help="show a daemon's device, programs and queue",
        description="Print the device status (backend, state, uptime, counters), the registered programs and "
        "the queue of a daemon.",
    )
    status.add_argument(
        "--target",
        default=DEFAULT_TARGET,
        metavar="ADDRESS",
        help=f"HOST:PORT or unix:///PATH (default {DEFAULT_TARGET})",
    )
    status.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    _add_timeout(status)
    status.set_defaults(func=cmd_status)
    return parser


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="S", help="deadline of each call, in seconds"
    )
    tls = parser.add_argument_group("TLS and tokens (a daemon started with --tls-cert or --auth-tokens)")
    tls.add_argument("--tls", action="store_true", help="speak TLS, trusting the system's roots (or --tls-ca)")
    tls.add_argument("--tls-ca", metavar="PEM", help="the CA that signed the daemon's certificate (implies --tls)")
    tls.add_argument("--tls-cert", metavar="PEM", help="client certificate, for a daemon with --tls-client-ca")
    tls.add_argument("--tls-key", metavar="PEM", help="the client certificate's key")
    tls.add_argument("--token", help="bearer token (default: $FPGACSP_TOKEN); prefer the variable: argv is visible")


class _UsageError(Exception):
    """Bad input or an unavailable target: reported on one line, exit code 2."""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def cmd_solve(args: argparse.Namespace) -> int:
    """``fpgacsp solve``: load, solve in batches, write the CSV in input order, summarise."""
    records = _load(args.file, args.limit)
    solver = _connect(args.target, args.timeout, args)
    mode = Mode[args.mode.upper()]  # argparse's choices are the Mode names, lower case
    with _open_out(args.out) as out:  # opened first: an unwritable OUT fails before any solving
        try:
            warmup = _warm_up(solver, records, mode)
            start = time.perf_counter()
            outcomes = solve_records(solver, records, mode, args.node_limit, args.max_solutions, args.batch)
            elapsed = time.perf_counter() - start
        finally:
            solver.close()
        if out is not None:
            out.writelines(format_line(rec, oc) + "\n" for rec, oc in zip(records, outcomes, strict=True))
    report = Report.build(records, outcomes, mode, args.max_solutions)
    print(report.summary(args.file, mode, elapsed, warmup), file=sys.stderr)
    if report.contradicted:
        return EXIT_MISMATCH
    return EXIT_TARGET_FAILED if report.failed else EXIT_OK


def _connect(target: str, timeout: float, args: argparse.Namespace | None = None) -> Client:
    """``connect(target)``; a bad address or a missing local engine is a usage error (nothing is sent yet)."""
    extra: dict[str, object] = {}
    threads = getattr(args, "threads", None)
    if threads is not None:
        if target != LOCAL_TARGET:
            raise _UsageError(
                f"--threads: only for --target local; the daemon at {target!r} runs the threads it was started "
                "with (fpgacspd --threads N)"
            )
        extra["threads"] = threads
    if args is not None and target != LOCAL_TARGET:
        if args.tls or args.tls_ca or args.tls_cert:
            extra["tls"] = TLS(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
        if args.token:
            extra["token"] = args.token
    try:
        return connect(target, timeout=timeout, **extra)  # type: ignore[arg-type]
    except (ImportError, ValueError) as exc:
        raise _UsageError(f"--target {target!r}: {exc}") from None


def _load(path: str, limit: int | None) -> list[PuzzleRecord]:
    try:
        records = load_puzzle_file(path, limit)
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # PuzzleFileError names the file and line
        raise _UsageError(str(exc)) from None
    if not records:  # nothing to solve is a mistake (a wrong or empty file), not a success
        raise _UsageError(f"{path}: no puzzles found (only blank lines, comments or a header)")
    return records


@contextmanager
def _open_out(path: str | None) -> Iterator[TextIO | None]:
    """The CSV destination: None (no --out), stdout ('-'), or a file."""
    if path is None:
        yield None
        return
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below, errors become usage errors
    except OSError as exc:
        raise _UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    with f:
        yield f


def _warm_up(solver: Client, records: Sequence[PuzzleRecord], mode: Mode) -> float:
    """Load the engine's compiled kernels on one puzzle so the timed run measures solving only."""
    if not records:
        return 0.0
    start = time.perf_counter()
    grid = parse_sudoku(records[0].puzzle)
    solver.solve(sudoku_program(box_for_cells(len(grid))), sudoku_domains(grid), mode=mode, node_limit=1)
    return time.perf_counter() - start


def solve_records(
    solver: Client,
    records: Sequence[PuzzleRecord],
    mode: Mode,
    node_limit: int,
    max_solutions: int,
    batch: int,
) -> list[Outcome | Failed]:
    """Solve every record, ``batch`` at a time; sizes may mix (each size is its own engine call). A batch the
    target fails is :class:`Failed` for each of its records; the other batches are still solved."""
    outcomes: list[Outcome | Failed | None] = [None] * len(records)
    for lo in range(0, len(records), batch):
        groups: dict[int, list[int]] = {}
        grids = [parse_sudoku(r.puzzle) for r in records[lo : lo + batch]]
        for i, grid in enumerate(grids):
            groups.setdefault(len(grid), []).append(i)
        for cells, idx in groups.items():
            program = sudoku_program(box_for_cells(cells))
            doms = sudoku_domains(np.stack([grids[i] for i in idx]))
            try:
                res = solver.solve(program, doms, mode=mode, node_limit=node_limit, max_solutions=max_solutions)
            except FpgacspError as exc:
                for i in idx:
                    outcomes[lo + i] = Failed(exc)
                continue
            values = singleton_values(res.domains)
            for row, i in enumerate(idx):
                status = Status(int(res.status[row]))
                outcomes[lo + i] = Outcome(status, int(res.nodes[row]), int(res.solutions[row]), values[row])
    return [oc for oc in outcomes if oc is not None]


def format_line(rec: PuzzleRecord, oc: Outcome | Failed) -> str:
    """``puzzle,result,status,nodes,solutions`` with the result in the puzzle's notation; ``puzzle,,error,0,0``
    for a puzzle the target did not answer."""
    if isinstance(oc, Failed):
        return f"{rec.puzzle},,error,0,0"
    if oc.status in (Status.UNSAT, Status.CONFLICT):
        result = rec.puzzle
    else:
        result = format_sudoku(oc.values, blank=_blank_of(rec.puzzle))
        if any(ch.islower() for ch in rec.puzzle):
            result = result.lower()
    return f"{rec.puzzle},{result},{oc.status.name.lower()},{oc.nodes},{oc.solutions}"


def _blank_of(puzzle: str) -> str:
    return next((ch for ch in puzzle if ch in BLANKS), ".")


def agrees(rec: PuzzleRecord, oc: Outcome, mode: Mode, max_solutions: int) -> bool | None:
    """Does the result agree with the file's record? None when the file records nothing for this puzzle.

    SOLVE: nsol 0 wants UNSAT; nsol 1 wants the recorded solution and a count of 1; nsol >= 2 wants a
    valid solution of the puzzle and a count of min(2, max_solutions) (the recorded solution need not be
    the first in search order); no nsol wants a valid solution. PROPAGATE: propagation is sound, so every
    fixed cell must match the recorded solution, and a puzzle without solutions must not come out SOLVED.
    """
    if rec.solution is None and rec.nsol is None:
        return None
    grid = parse_sudoku(rec.puzzle)
    box = box_for_cells(len(grid))
    if rec.nsol == 0:
        return oc.status == Status.UNSAT if mode == Mode.SOLVE else oc.status != Status.SOLVED
    recorded = parse_sudoku(rec.solution) if rec.solution is not None else None
    if mode == Mode.PROPAGATE:
        fixed = oc.values >= 0
        consistent = recorded is None or bool(np.array_equal(oc.values[fixed], recorded[fixed]))
        return oc.status != Status.CONFLICT and consistent
    if oc.status != Status.SOLVED:
        return False
    if rec.nsol == 1:
        return recorded is not None and bool(np.array_equal(oc.values, recorded)) and oc.solutions == 1
    valid = check_sudoku_solution(oc.values, box) and bool(np.all((grid < 0) | (grid == oc.values)))
    if rec.nsol is None:
        return valid
    return valid and oc.solutions == min(2, max_solutions)


@dataclass(frozen=True)
class Report:
    """Counts for the summary: statuses, nodes, and agreement with recorded solutions."""

    counts: dict[Status, int]
    total_nodes: int
    checked: int
    agreed: int
    contradicted: int
    failed: list[FpgacspError] = field(default_factory=list)  # one per puzzle not answered

    @classmethod
    def build(cls, records: Sequence[PuzzleRecord], outcomes: Sequence[Outcome | Failed], mode: Mode, k: int) -> Report:
        counts = dict.fromkeys(Status, 0)
        checked = agreed = contradicted = 0
        failed: list[FpgacspError] = []
        answered: list[Outcome] = []
        for rec, oc in zip(records, outcomes, strict=True):
            if isinstance(oc, Failed):
                failed.append(oc.error)
                continue
            answered.append(oc)
            counts[oc.status] += 1
            verdict = agrees(rec, oc, mode, k)
            if verdict is None:
                continue
            checked += 1
            agreed += verdict
            contradicted += not verdict and oc.status != Status.LIMIT
        return cls(counts, sum(oc.nodes for oc in answered), checked, agreed, contradicted, failed)

    def summary(self, path: str, mode: Mode, elapsed: float, warmup: float) -> str:
        n = sum(self.counts.values())
        shown = [Status.SOLVED, Status.UNSAT, Status.LIMIT]
        if mode == Mode.PROPAGATE:
            shown += [Status.FIXPOINT, Status.CONFLICT]
        rate = f"{n / elapsed:.1f} puzzles/s" if n and elapsed > 0 else "n/a puzzles/s"
        mean_nodes = self.total_nodes / n if n else 0.0
        lines = [
            f"fpgacsp solve: {n + len(self.failed)} puzzles from {path} (mode {mode.name.lower()})",
            "  " + ", ".join(f"{s.name.lower()} {self.counts[s]}" for s in shown),
            f"  time {elapsed:.3f} s (engine warm-up {warmup:.3f} s not included), {rate}, mean nodes {mean_nodes:.2f}",
        ]
        if self.checked:
            line = f"  recorded solutions: {self.agreed} of {self.checked} agree"
            if self.contradicted:
                line += f", {self.contradicted} CONTRADICT the record"
            lines.append(line)
        if self.failed:
            first = self.failed[0]
            lines.append(
                f"  NOT ANSWERED: {len(self.failed)} of {n + len(self.failed)} puzzles (their lines say 'error'): "
                f"{type(first).__name__}: {first}"
            )
        return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    """``fpgacsp status``: device status, the program list and the queue of one target."""
    client = _connect(args.target, args.timeout, args)
    try:
        device = client.device_status()
        programs = client.list_programs()
        stats = client.stats()
    finally:
        client.close()
    if args.json:
        doc = {"target": args.target, "device": asdict(device), "programs": [asdict(p) for p in programs]}
        doc["device"]["state"] = device.state.name
        doc["stats"] = asdict(stats)
        print(json.dumps(doc, indent=2))
    else:
        print(format_status(args.target, device, programs, stats, now_ms=time.time_ns() // 1_000_000))
    return EXIT_OK


def format_status(target: str, device: DeviceStatus, programs: Sequence[ProgramInfo], stats: Stats, now_ms: int) -> str:
    """The human-readable status: a device block, the queue, a request summary and a program table."""
    n = _thousands
    lines = [
        f"fpgacsp status of {target}",
        f"  backend    {device.backend} ({device.description})"
        if device.description
        else f"  backend    {device.backend}",
        f"  state      {device.state.name}",
        f"  version    {device.daemon_version or 'unknown'}",
        f"  uptime     {_duration(device.uptime_s)}",
        f"  work       {n(device.batches)} batches, {n(device.instances)} instances, {n(device.nodes)} nodes, "
        f"{n(device.sweeps)} sweeps",
        f"  faults     {n(device.faults)} faults, {n(device.resets)} resets",
        f"  device     busy for {device.busy_ms / 1000:.1f} s, card at {n(device.card_nodes)} nodes"
        if device.busy_ms
        else f"  device     idle, card at {n(device.card_nodes)} nodes",
        f"  queue      {n(device.queue_depth)} requests waiting"
        + (f" (max_batch {n(device.max_batch)}, max_delay_us {n(device.max_delay_us)})" if device.max_batch else ""),
    ]
    by_code: dict[str, int] = {}
    for m in stats.requests:
        if m.method == "Solve":
            by_code[m.code] = by_code.get(m.code, 0) + m.count
    if by_code:
        lines.append("  solves     " + ", ".join(f"{code} {n(count)}" for code, count in sorted(by_code.items())))
    if stats.batches:
        lines.append(
            f"  batching   {stats.mean_batch_size:.1f} instances and {stats.mean_merged_requests:.1f} requests "
            f"per device batch; dropped {n(stats.dropped_expired)} expired, {n(stats.dropped_cancelled)} cancelled; "
            f"rejected {n(stats.rejected_queue_full)} (queue full)"
        )
    lines += ["", f"programs ({len(programs)} loaded)"]
    if not programs:
        lines.append("  none")
        return "\n".join(lines)
    header = ("ID", "N", "D", "CONSTRAINTS", "PINNED", "SOLVES", "LAST USED")
    rows = [
        (
            p.program_id[:12],
            n(p.num_vars),
            str(p.domain_size),
            n(p.num_constraints),
            "yes" if p.pinned else "no",
            n(p.solves),
            _last_used(p.last_used_unix_ms, now_ms),
        )
        for p in sorted(programs, key=lambda p: -p.last_used_unix_ms)
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 2, 3, 5}  # numbers align right
    for row in [header, *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _thousands(value: int) -> str:
    return f"{value:,}"


def _duration(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h {minutes:02d}m {secs:02d}s" if hours or days else f"{minutes}m {secs:02d}s"
    return f"{days}d {text}" if days else text


def _last_used(unix_ms: int, now_ms: int) -> str:
    if unix_ms <= 0:
        return "never"
    stamp = datetime.datetime.fromtimestamp(unix_ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{stamp} ({_duration(max(0, now_ms - unix_ms) // 1000)} ago)"
