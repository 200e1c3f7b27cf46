"""Graph colouring: DIMACS ``.col`` graphs and the NEQ program that colours them.

Vertex ``v`` (0-based) is variable ``v`` with ``D = colors``; each edge is one ``NEQ(u, v, 0)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fpgacsp_proto.isa import Neq, Program, make_program

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Graph:
    """Undirected simple graph: vertices ``0 .. num_vertices-1``, edges ``(u, v)`` with ``u < v``, no repeats."""

    num_vertices: int
    edges: tuple[tuple[int, int], ...]

    @classmethod
    def from_edges(cls, num_vertices: int, edges: Sequence[tuple[int, int]]) -> Graph:
        """Normalise (0-based) edges: orient ``u < v``, drop duplicates, sort; reject loops and bad ids."""
        seen: set[tuple[int, int]] = set()
        for u, v in edges:
            for w in (u, v):
                if not 0 <= w < num_vertices:
                    raise ValueError(f"edge ({u}, {v}): vertex {w} is out of range [0, {num_vertices})")
            if u == v:
                raise ValueError(f"edge ({u}, {v}) is a self-loop: no colouring exists")
            seen.add((min(u, v), max(u, v)))
        return cls(num_vertices, tuple(sorted(seen)))


def load_dimacs(path: PathLike) -> Graph:
    """Read a DIMACS edge file: ``c`` comments, one ``p edge V E`` line, ``e u v`` lines (1-based).

    Files that list an edge in both directions are accepted (edges are deduplicated), and so are extra
    fields after ``p edge V E`` (some files append the chromatic number).
    """
    num_vertices: int | None = None
    edges: list[tuple[int, int]] = []
    with Path(path).open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            fields = raw.split()
            if not fields or fields[0] == "c":
                continue
            try:
                if fields[0] == "p":
                    if num_vertices is not None:
                        raise ValueError("a second 'p' line")
                    num_vertices = _parse_problem(fields)
                elif fields[0] == "e":
                    if num_vertices is None:
                        raise ValueError("an 'e' line before the 'p edge V E' line")
                    edges.append(_parse_edge(fields, num_vertices))
                else:
                    raise ValueError(f"unknown line type {fields[0]!r} (expected c, p or e)")
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
    if num_vertices is None:
        raise ValueError(f"{path}: no 'p edge V E' line")
    return Graph.from_edges(num_vertices, edges)


def _parse_problem(fields: list[str]) -> int:
    if len(fields) < 4 or fields[1] not in ("edge", "col"):
        raise ValueError(f"expected 'p edge V E', got {' '.join(fields)!r}")
    try:
        v = int(fields[2])
    except ValueError:
        raise ValueError(f"vertex count {fields[2]!r} is not an integer") from None
    if v < 1:
        raise ValueError(f"vertex count must be >= 1, got {v}")
    return v


def _parse_edge(fields: list[str], num_vertices: int) -> tuple[int, int]:
    if len(fields) != 3:
        raise ValueError(f"expected 'e u v', got {' '.join(fields)!r}")
    try:
        u, v = int(fields[1]), int(fields[2])
    except ValueError:
        raise ValueError(f"edge endpoints must be integers, got {' '.join(fields[1:])!r}") from None
    for w in (u, v):
        if not 1 <= w <= num_vertices:
            raise ValueError(f"vertex {w} is out of range [1, {num_vertices}] (DIMACS is 1-based)")
    if u == v:
        raise ValueError(f"edge {u} {v} is a self-loop: no colouring exists")
    return u - 1, v - 1


def coloring_program(graph: Graph, colors: int) -> Program:
    """One variable per vertex, ``D = colors``, one ``NEQ(u, v, 0)`` per edge in ``graph.edges`` order."""
    if not 1 <= colors <= 64:
        raise ValueError(f"colors: must be in [1, 64], got {colors}")
    return make_program(graph.num_vertices, colors, [Neq(u, v, 0) for u, v in graph.edges])


def check_coloring(graph: Graph, colors: Sequence[int] | np.ndarray) -> bool:
    """True when every vertex has a colour and no edge joins two vertices of the same colour."""
    cols = [int(c) for c in colors]
    if len(cols) != graph.num_vertices or any(c < 0 for c in cols):
        return False
    return all(cols[u] != cols[v] for u, v in graph.edges)
