"""Sudoku of any box size: the ISA program, the tdoku one-line notation, puzzle files and a checker.

A grid of side ``S = box * box`` has ``S * S`` variables, row-major, over values ``0 .. S-1``; digit ``k``
is value ``k - 1`` so that the digit set maps onto the ISA's ``{0 .. D-1}`` domain without a gap. Grids in
memory are ``int64`` arrays with ``-1`` for a blank, the form the other builders and the CLI share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from fpgacsp_proto.isa import AllDiff, Program, make_program

MIN_BOX = 2
MAX_BOX = 5
BLANKS = frozenset("._-0")
# Digits 1..35 as characters: '1'..'9' then 'A'.. (A = 10). Index = digit.
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
GRID_LENGTHS = {b**4: b for b in range(MIN_BOX, MAX_BOX + 1)}  # 16, 81, 256, 625 -> box

PathLike = str | os.PathLike[str]


def _check_box(box: int) -> int:
    if not MIN_BOX <= box <= MAX_BOX:
        raise ValueError(f"box: must be in [{MIN_BOX}, {MAX_BOX}] (grids 4x4 to 25x25), got {box}")
    return box


def sudoku_units(box: int = 3) -> list[tuple[int, ...]]:
    """The ``3 * S`` units as variable tuples: rows, then columns, then boxes (each row-major)."""
    s = _check_box(box) ** 2
    rows = [tuple(r * s + c for c in range(s)) for r in range(s)]
    cols = [tuple(r * s + c for r in range(s)) for c in range(s)]
    boxes = [
        tuple((br * box + r) * s + bc * box + c for r in range(box) for c in range(box))
        for br in range(box)
        for bc in range(box)
    ]
    return rows + cols + boxes


@lru_cache(maxsize=8)
def sudoku_program(box: int = 3) -> Program:
    """``S * S`` variables row-major, ``D = S``, one exact ALLDIFF per row, column and box (in that order).

    Cached: the program is immutable and callers build it once per batch.
    """
    s = _check_box(box) ** 2
    return make_program(s * s, s, [AllDiff(unit, exact=True) for unit in sudoku_units(box)])


def box_for_cells(num_cells: int) -> int:
    """Box size of a grid with ``num_cells`` cells; ValueError for a size that is no supported Sudoku."""
    if num_cells not in GRID_LENGTHS:
        sizes = ", ".join(str(n) for n in GRID_LENGTHS)
        raise ValueError(f"a Sudoku grid has {sizes} cells, got {num_cells}")
    return GRID_LENGTHS[num_cells]


def _char_codes() -> np.ndarray:
    """Lookup table code point (< 256) -> digit 1..35, 0 for a blank, -1 for anything else."""
    lut = np.full(256, -1, dtype=np.int64)
    for ch in BLANKS:
        lut[ord(ch)] = 0
    for digit, ch in enumerate(_DIGITS[1:], start=1):
        lut[ord(ch)] = lut[ord(ch.lower())] = digit
    return lut


_CHAR_CODES = _char_codes()


def parse_sudoku(line: str) -> np.ndarray:
    """One tdoku-style grid line to ``int64[S*S]`` (-1 blank, digit k -> k-1).

    The side is inferred from the length. Blanks are ``. 0 _ -``; digits ``1``-``9`` then ``A``.. (A = 10,
    either case) for sides above 9. Raises ValueError naming the bad length or the position and character.
    Vectorised through a lookup table: the CLI parses every puzzle inside its timed loop.
    """
    text = line.strip()
    s = box_for_cells(len(text)) ** 2
    points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)
    codes = np.where(points < 256, _CHAR_CODES[np.minimum(points, 255)], -1)
    bad = np.flatnonzero((codes < 0) | (codes > s))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"position {i} (row {i // s + 1}, column {i % s + 1}): character {text[i]!r} is not a digit 1..{s} "
            f"or a blank ('.', '0', '_', '-') of a {s}x{s} Sudoku"
        )
    return codes - 1


def format_sudoku(values: np.ndarray, blank: str = ".") -> str:
    """Inverse of :func:`parse_sudoku`: value v -> digit v+1 as a character, -1 -> ``blank``."""
    vals = np.asarray(values).reshape(-1)
    s = box_for_cells(len(vals)) ** 2
    if len(blank) != 1:
        raise ValueError(f"blank: must be one character, got {blank!r}")
    bad = np.flatnonzero((vals < -1) | (vals >= s))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"values[{i}] = {vals[i]} is not -1 or a value 0..{s - 1}")
    alphabet = blank + _DIGITS[1 : s + 1]
    return "".join([alphabet[v] for v in (vals + 1).tolist()])


def sudoku_domains(grids: np.ndarray) -> np.ndarray:
    """Grids ``int[B, S*S]`` (-1 blank) to domains ``uint64[B, S*S]``: a given is a singleton, a blank is full.

    A single grid ``int[S*S]`` is taken as a batch of one.
    """
    g = np.asarray(grids)
    if g.ndim == 1:
        g = g[None, :]
    if g.ndim != 2 or g.dtype.kind not in "iu":
        raise ValueError(f"grids: expected an integer array [B, S*S], got {g.dtype} {list(g.shape)}")
    s = box_for_cells(g.shape[1]) ** 2
    g = g.astype(np.int64)
    if g.size and (g.min() < -1 or g.max() >= s):
        raise ValueError(f"grids: values must be -1 (blank) or 0..{s - 1}, got range [{g.min()}, {g.max()}]")
    full = np.uint64((1 << s) - 1)
    single = np.left_shift(np.uint64(1), np.maximum(g, 0).astype(np.uint64))
    return np.where(g < 0, full, single).astype(np.uint64)


def check_sudoku_solution(values: np.ndarray, box: int = 3) -> bool:
    """True when ``values`` is a complete grid (no blanks) whose rows, columns and boxes are permutations."""
    vals = np.asarray(values).reshape(-1)
    s = _check_box(box) ** 2
    if len(vals) != s * s:
        return False
    want = list(range(s))
    return all(sorted(vals[list(unit)].tolist()) == want for unit in sudoku_units(box))


@dataclass(frozen=True)
class PuzzleRecord:
    """One line of a puzzle file: the grid as written, its recorded solution and solution count if any."""

    puzzle: str
    solution: str | None
    nsol: int | None


class PuzzleFileError(ValueError):
    """A puzzle file line that cannot be read; the message names the file and line number."""


def load_puzzle_file(path: PathLike, limit: int | None = None) -> list[PuzzleRecord]:
    """Read a tdoku-format or ``puzzle,solution[,nsol]`` CSV file (any Sudoku size, sizes may mix).

    tdoku lines hold a grid optionally followed by whitespace and anything else (a comment). Lines
    starting with ``#`` and blank lines are skipped, and so is a leading CSV header such as
    ``puzzle,solution``. Every grid is parsed here so that a bad line fails with its line number before
    any solving starts. ``limit`` stops after that many puzzles.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit: must be >= 0, got {limit}")
    records: list[PuzzleRecord] = []
    first = True
    with Path(path).open(encoding="utf-8") as f:
        try:
            for lineno, raw in enumerate(f, start=1):
                if limit is not None and len(records) >= limit:
                    break
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if first and _is_header(line):
                    first = False
                    continue
                first = False
                try:
                    records.append(_parse_record(line))
                except ValueError as exc:
                    raise PuzzleFileError(f"{path}:{lineno}: {exc}") from None
        except UnicodeDecodeError as exc:  # decoding is buffered: the byte is known, its line is not
            raise PuzzleFileError(
                f"{path}: not a text file (byte 0x{exc.object[exc.start]:02x} is not UTF-8); puzzle files are text, "
                "one puzzle a line"
            ) from None
    return records


def _is_header(line: str) -> bool:
    """A CSV header row: comma separated words, none of which is a grid."""
    fields = [f.strip() for f in line.split(",")]
    return len(fields) >= 2 and all(f.replace("_", "").isalpha() and len(f) not in GRID_LENGTHS for f in fields)


def _parse_record(line: str) -> PuzzleRecord:
    if "," not in line:
        puzzle = line.split()[0]
        parse_sudoku(puzzle)
        return PuzzleRecord(puzzle, None, None)
    fields = [f.strip() for f in line.split(",")]
    if len(fields) > 3:
        raise ValueError(f"expected puzzle,solution[,nsol], got {len(fields)} fields")
    puzzle = fields[0]
    try:
        parse_sudoku(puzzle)
    except ValueError as exc:
        raise ValueError(f"puzzle: {exc}") from None
    solution = fields[1] or None
    if solution is not None:
        try:
            sol = parse_sudoku(solution)
        except ValueError as exc:
            raise ValueError(f"solution: {exc}") from None
        if len(solution) != len(puzzle):
            raise ValueError(f"solution has {len(solution)} cells but the puzzle has {len(puzzle)}")
        if (sol < 0).any():
            raise ValueError("solution has blanks")
    nsol = None
    if len(fields) == 3 and fields[2]:
        try:
            nsol = int(fields[2])
        except ValueError:
            raise ValueError(f"nsol: expected an integer, got {fields[2]!r}") from None
        if nsol < 0:
            raise ValueError(f"nsol: must be >= 0, got {nsol}")
    return PuzzleRecord(puzzle, solution, nsol)
