"""The RTL engine's elaboration parameters, in one place.

The Verilog top ``fcsp_engine`` takes exactly these as parameters (``verilog_parameters``); the cocotb testbenches,
the synthesis scripts and ``fpgacsp-rtl-solve`` build it from an ``EngineParams``, and the capabilities a card built
from it reports (``CAP_VARS.MAX_VARS``, ``CAP_ENGINE.MAX_DOMAIN``/``KINDS``/``LANES``) are read off the same object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fpgacsp_proto.isa import Kind

ALL_KINDS = sum(1 << (k - 1) for k in Kind)  # CAP_ENGINE.KINDS: bit 0 ALLDIFF, 1 NEQ, 2 TABLE2, 3 LINEAR


@dataclass(frozen=True)
class EngineParams:
    """One engine configuration. ``stack_depth`` defaults to ``num_vars``: the search stack holds the right
    siblings of the left branches on the current path, and each of those fixed a different variable."""

    num_vars: int  # NV: variables of the largest program
    domain_width: int  # DW: bits per domain, the largest D
    constraints: int  # NC: constraints of the largest program
    lanes: int  # LANES: propagators evaluated per cycle
    max_scope: int  # MS: variables in the largest scope (ALLDIFF, LINEAR)
    kinds: int = ALL_KINDS  # which propagator units are built
    stack_depth: int = field(default=0)
    # Scopes wired at elaboration (FIXED = 1): constraint c of every program must have scope scopes[c]. Empty: the
    # scopes come from the program image through a crossbar (any program that fits).
    scopes: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "num_vars": (self.num_vars, 1, 1 << 20),
            "domain_width": (self.domain_width, 2, 64),
            "constraints": (self.constraints, 1, 1 << 16),
            "lanes": (self.lanes, 1, 255),
            "max_scope": (self.max_scope, 2, 64),
            "kinds": (self.kinds, 1, ALL_KINDS),
        }
        for name, (value, low, high) in checks.items():
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"EngineParams.{name}: expected an integer in [{low}, {high}], got {value!r}")
        if self.stack_depth == 0:
            object.__setattr__(self, "stack_depth", self.num_vars)
        if self.stack_depth < self.num_vars:
            raise ValueError(f"EngineParams.stack_depth: {self.stack_depth} < num_vars {self.num_vars} can overflow")
        object.__setattr__(self, "scopes", tuple(tuple(int(v) for v in sc) for sc in self.scopes))
        if len(self.scopes) > self.constraints or any(
            not 1 <= len(sc) <= self.max_scope or not all(0 <= v < self.num_vars for v in sc) for sc in self.scopes
        ):
            raise ValueError("EngineParams.scopes: at most `constraints` scopes of 1..max_scope variables in range")

    @property
    def var_bits(self) -> int:
        return max(1, (self.num_vars - 1).bit_length())

    def supports(self, kind: Kind) -> bool:
        return bool(self.kinds >> (int(kind) - 1) & 1)

    @property
    def record_words(self) -> int:
        """32-bit words per constraint record in the program image (docs/rtl.md)."""
        return 4 + 2 * self.max_scope + 2 * self.domain_width

    @property
    def record_stride(self) -> int:
        """Words between two records: ``record_words`` rounded up to a power of two, so the engine splits a word
        address into (record, field) with a shift instead of a divider."""
        return 1 << (self.record_words - 1).bit_length()

    @property
    def eval_cycles_max(self) -> int:
        return math.ceil(self.constraints / self.lanes)

    def capabilities(self) -> dict[str, int]:
        """The capability fields (docs/regmap.md) a card built with this engine reports."""
        return {
            "CAP_VARS.MAX_VARS": self.num_vars,
            "CAP_ENGINE.MAX_DOMAIN": self.domain_width,
            "CAP_ENGINE.KINDS": self.kinds,
            "CAP_ENGINE.LANES": self.lanes,
        }

    def verilog_parameters(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {
            "NV": self.num_vars,
            "DW": self.domain_width,
            "NC": self.constraints,
            "LANES": self.lanes,
            "MS": self.max_scope,
            "KINDS": self.kinds,
            "SD": self.stack_depth,
        }
        if self.scopes:
            vw = self.var_bits
            value = 0
            for c, scope in enumerate(self.scopes):
                for p, v in enumerate(scope):
                    value |= v << ((c * self.max_scope + p) * vw)
            out["FIXED"] = 1
            out["SCOPES"] = f"{self.constraints * self.max_scope * vw}'h{value:x}"
            occurrences = self.occurrences()
            most, ow = max(1, max(len(occ) for occ in occurrences)), self.occurrence_bits
            table = 0
            for v, occ in enumerate(occurrences):
                for o, (c, p) in enumerate(occ):
                    table |= (1 + c * self.max_scope + p) << ((v * most + o) * ow)
            used = sum(1 << (c * self.max_scope + p) for c, scope in enumerate(self.scopes) for p in range(len(scope)))
            out["USED"] = f"{self.constraints * self.max_scope}'h{used:x}"
            out["MO"] = most
            out["OCC"] = f"{self.num_vars * most * ow}'h{table:x}"
        return out

    def occurrences(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """For each variable, the (constraint, position) pairs of the wired scopes that hold it, in order: the
        inverse of ``scopes``, which the wired engine's write-back needs. It is computed here and passed to the RTL
        as ``OCC`` because Yosys cannot invert ``SCOPES`` at elaboration: the NV x NC x MS loop over a 1,701-bit
        parameter kept its AST frontend busy for an hour on the 9x9 engine."""
        occ: list[list[tuple[int, int]]] = [[] for _ in range(self.num_vars)]
        for c, scope in enumerate(self.scopes):
            for p, v in enumerate(scope):
                occ[v].append((c, p))
        return tuple(tuple(o) for o in occ)

    @property
    def occurrence_bits(self) -> int:
        """Bits of one ``OCC`` entry: 1 + c * MS + p, 0 for none."""
        return (self.constraints * self.max_scope).bit_length()


def _sudoku_scopes(box: int) -> tuple[tuple[int, ...], ...]:
    """The rows, columns and boxes of a Sudoku, in the order of the client's ``sudoku_program`` (a test keeps
    them equal: the daemon does not import the client)."""
    side = box * box
    rows = [tuple(r * side + c for c in range(side)) for r in range(side)]
    cols = [tuple(r * side + c for r in range(side)) for c in range(side)]
    boxes = [
        tuple((br * box + r) * side + bc * box + c for r in range(box) for c in range(box))
        for br in range(box)
        for bc in range(box)
    ]
    return tuple(rows + cols + boxes)


# The configurations the repository builds: a small one with every kind for the random cosimulation, and the
# 9x9-Sudoku engines the synthesis reports are for (27 ALLDIFF units, all evaluated in one cycle): SUDOKU9 with the
# 27 scopes wired (every 9x9 Sudoku), SUDOKU9_CROSSBAR reading them from the program image (any program of 81
# variables, D <= 9, 27 ALLDIFFs of up to 9 variables).
TEST_SMALL = EngineParams(num_vars=10, domain_width=8, constraints=8, lanes=3, max_scope=5)
SUDOKU9_CROSSBAR = EngineParams(num_vars=81, domain_width=9, constraints=27, lanes=27, max_scope=9, kinds=1)
SUDOKU9 = EngineParams(
    num_vars=81, domain_width=9, constraints=27, lanes=27, max_scope=9, kinds=1, scopes=_sudoku_scopes(3)
)
# 64-bit domains (TABLE2 rows over two words, LINEAR's widest products) on a narrow engine, one lane.
TEST_WIDE = EngineParams(num_vars=4, domain_width=64, constraints=4, lanes=1, max_scope=3)
# The engine of the card's RTL top level (fcsp_card, the ``rtl`` device backend): every kind, any program of up to
# 81 variables, D <= 9 and 96 constraints of up to 9 positions (a 9x9 Sudoku, the self-test's programs, n-queens up
# to 8), 8 lanes.
CARD = EngineParams(num_vars=81, domain_width=9, constraints=96, lanes=8, max_scope=9)
