"""Quasigroup completion (Latin squares with holes): the MiniZinc-challenge grid file and the program.

An ``n x n`` grid has ``n * n`` variables row-major over ``0 .. n-1``; every row and every column is a
permutation, so each gets an exact ALLDIFF (hidden singles matter here as much as in Sudoku).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fpgacsp_proto.isa import AllDiff, Program, make_program

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, eq=False)
class QcpInstance:
    """One instance: its name, side ``n`` and grid ``int64[n, n]`` (-1 a hole, else a given value)."""

    name: str
    n: int
    grid: np.ndarray


def load_qcp(path: PathLike) -> list[QcpInstance]:
    """Read ``name,N,grid`` lines (grid space separated, row-major, -1 a hole); ``#`` lines are comments."""
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                out.append(_parse_line(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
    return out


def _parse_line(line: str) -> QcpInstance:
    fields = line.split(",")
    if len(fields) != 3:
        raise ValueError(f"expected name,N,grid, got {len(fields)} comma-separated fields")
    name, n_text, grid_text = (x.strip() for x in fields)
    try:
        n = int(n_text)
        cells = [int(x) for x in grid_text.split()]
    except ValueError as exc:
        raise ValueError(f"not an integer: {exc}") from None
    if not 1 <= n <= 64:
        raise ValueError(f"N must be in [1, 64], got {n}")
    if len(cells) != n * n:
        raise ValueError(f"grid has {len(cells)} cells, expected N*N = {n * n}")
    grid = np.array(cells, dtype=np.int64).reshape(n, n)
    if grid.min() < -1 or grid.max() >= n:
        raise ValueError(f"grid values must be -1 (hole) or 0..{n - 1}, got range [{grid.min()}, {grid.max()}]")
    return QcpInstance(name, n, grid)


def qcp_program(n: int) -> Program:
    """``n * n`` variables row-major, ``D = n``: one exact ALLDIFF per row, then one per column."""
    if not 1 <= n <= 64:
        raise ValueError(f"n: must be in [1, 64], got {n}")
    rows = [AllDiff(tuple(r * n + c for c in range(n)), exact=True) for r in range(n)]
    cols = [AllDiff(tuple(r * n + c for r in range(n)), exact=True) for c in range(n)]
    return make_program(n * n, n, rows + cols)


def qcp_domains(grids: np.ndarray) -> np.ndarray:
    """Grids ``int[B, n, n]`` (one ``int[n, n]`` is a batch of one) to domains ``uint64[B, n*n]``."""
    g = np.asarray(grids)
    if g.ndim == 2:
        g = g[None]
    if g.ndim != 3 or g.shape[1] != g.shape[2] or g.dtype.kind not in "iu":
        raise ValueError(f"grids: expected an integer array [B, n, n], got {g.dtype} {list(g.shape)}")
    n = g.shape[1]
    if not 1 <= n <= 64:
        raise ValueError(f"grids: n must be in [1, 64], got {n}")
    flat = g.reshape(len(g), n * n).astype(np.int64)
    if flat.size and (flat.min() < -1 or flat.max() >= n):
        raise ValueError(f"grids: values must be -1 (hole) or 0..{n - 1}, got range [{flat.min()}, {flat.max()}]")
    full = np.uint64((1 << n) - 1) if n < 64 else np.uint64(2**64 - 1)
    single = np.left_shift(np.uint64(1), np.maximum(flat, 0).astype(np.uint64))
    return np.where(flat < 0, full, single).astype(np.uint64)


def check_latin_square(values: np.ndarray, givens: np.ndarray | None = None) -> bool:
    """True when ``values`` (``[n, n]`` or flat) is a Latin square that keeps every given of ``givens``."""
    v = np.asarray(values)
    n = math.isqrt(v.size)
    if n * n != v.size:
        return False
    v = v.reshape(n, n)
    want = np.arange(n)
    if not all(np.array_equal(np.sort(v[i]), want) and np.array_equal(np.sort(v[:, i]), want) for i in range(n)):
        return False
    if givens is None:
        return True
    g = np.asarray(givens).reshape(n, n)
    return bool(np.all((g < 0) | (g == v)))
