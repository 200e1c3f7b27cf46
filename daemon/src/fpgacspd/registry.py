"""Content-addressed program registry with size limits and LRU eviction of unpinned programs.

A program is named by the SHA-256 of its canonical encoding, so registering is idempotent: the same
program from any client gets the same entry back. Registering has two halves: preparing checks the limits,
encodes and hashes (:meth:`ProgramRegistry.prepare`, or :func:`fpgacspd.program_body.prepare_body` in a child
process for a huge program, which then crosses over as its canonical encoding only), and
:meth:`ProgramRegistry.admit` enters the result, on the event loop's thread (no locks). The registry bounds
the programs it holds by count and by their estimated memory (``max_total_bytes``). An entry stays usable by
requests that already hold it after it is released or evicted: in-flight solves finish, later ones get
``NOT_FOUND`` and the client re-registers.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256

from fpgacsp_proto.encoding import decode_program, encode_program
from fpgacsp_proto.isa import Program

from .config import RegistryConfig
from .errors import InvalidArgument, NotFound, ResourceExhausted
from .program_body import SizeLimits, check_encoding, check_shape

_ID = re.compile(r"[0-9a-f]{64}")
# What a held program costs in memory per byte of its canonical encoding: its Python objects (constraint
# records, scope tuples) measured with tracemalloc at 7-8x for Sudoku, graph colouring and ALLDIFF-heavy
# programs and 11x for NEQ-only ones, rounded up. tests/daemon/test_daemon_registry.py checks the bound.
FOOTPRINT_PER_ENCODED_BYTE = 12
FOOTPRINT_BASE = 1024  # the entry itself


@dataclass(frozen=True)
class PreparedProgram:
    """A checked, encoded and named program, ready for :meth:`ProgramRegistry.admit`. ``program`` is None when
    it was prepared in another process (a huge one): only its canonical encoding crossed over."""

    program_id: str
    encoding: bytes
    num_vars: int
    domain_size: int
    num_constraints: int
    program: Program | None = None

    @classmethod
    def of(cls, program: Program, encoding: bytes) -> PreparedProgram:
        n, d, c = program.num_vars, program.domain_size, len(program.constraints)
        return cls(sha256(encoding).hexdigest(), encoding, n, d, c, program)

    @property
    def encoded_bytes(self) -> int:
        return len(self.encoding)

    @property
    def footprint(self) -> int:
        return estimated_footprint(self.encoded_bytes)


def estimated_footprint(encoded_bytes: int) -> int:
    """The memory a held program of ``encoded_bytes`` canonical bytes is estimated to take."""
    return FOOTPRINT_BASE + FOOTPRINT_PER_ENCODED_BYTE * encoded_bytes


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ProgramEntry:
    program_id: str
    encoding: bytes  # canonical (docs/isa.md): what the device loads
    num_vars: int
    domain_size: int
    num_constraints: int
    pinned: bool
    registered_unix_ms: int
    last_used_unix_ms: int
    solves: int = 0
    _program: Program | None = field(default=None, repr=False)

    @classmethod
    def of(cls, program: Program, pinned: bool = False) -> ProgramEntry:
        """An entry for ``program`` as registering it makes one (for tests and tools)."""
        prepared = PreparedProgram.of(program, encode_program(program))
        return cls.prepared(prepared, pinned, 0)

    @classmethod
    def prepared(cls, p: PreparedProgram, pinned: bool, now_ms: int) -> ProgramEntry:
        return cls(p.program_id, p.encoding, p.num_vars, p.domain_size, p.num_constraints, pinned, now_ms, now_ms,
                   _program=p.program)  # fmt: skip

    @property
    def program(self) -> Program:
        """The program, decoded from its encoding on first use when it was prepared in another process (a huge
        program then costs its Python objects only once a client solves it)."""
        if self._program is None:
            self._program = decode_program(self.encoding)
        return self._program

    @property
    def encoded_bytes(self) -> int:
        return len(self.encoding)

    @property
    def footprint(self) -> int:
        return estimated_footprint(self.encoded_bytes)


def check_program_id(program_id: str) -> str:
    if not _ID.fullmatch(program_id):
        raise InvalidArgument(f"program_id: expected 64 lowercase hex digits (SHA-256), got {_shown(program_id)}")
    return program_id


def _shown(value: str, limit: int = 80) -> str:
    """``value`` for an error message: quoted, and cut after ``limit`` characters (a client's 10 kB id is not
    echoed back in full into a status message and the logs)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


class ProgramRegistry:
    """``register`` / ``get`` / ``release`` / ``list``; ``on_remove`` hears about every entry that leaves."""

    def __init__(self, config: RegistryConfig, on_remove: Callable[[ProgramEntry], None] | None = None) -> None:
        self.config = config
        self._entries: OrderedDict[str, ProgramEntry] = OrderedDict()  # least recently used first
        self._on_remove = on_remove
        self.evictions = 0
        self.total_bytes = 0  # estimated footprint of every entry held

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, program_id: object) -> bool:
        return program_id in self._entries

    def register(self, program: Program, pin: bool = False) -> tuple[ProgramEntry, bool]:
        """``(entry, created)``. Registering again is a no-op except that ``pin=True`` pins for good."""
        return self.admit(self.prepare(program), pin)

    @property
    def limits(self) -> SizeLimits:
        c = self.config
        return SizeLimits(c.max_vars, c.max_constraints, c.max_program_bytes)

    def prepare(self, program: Program) -> PreparedProgram:
        """Check the per-program limits, encode and hash. Pure: safe on any thread, the registry unchanged."""
        check_shape(program.num_vars, len(program.constraints), self.limits)
        encoded = encode_program(program)
        check_encoding(len(encoded), self.limits)
        return PreparedProgram.of(program, encoded)

    def admit(self, prepared: PreparedProgram, pin: bool = False) -> tuple[ProgramEntry, bool]:
        """Enter a prepared program (event loop thread): LRU eviction of unpinned programs makes room by count
        and by estimated memory; ``RESOURCE_EXHAUSTED`` when only pinned ones are left to evict."""
        pid = prepared.program_id
        entry = self._entries.get(pid)
        if entry is not None:
            entry.pinned = entry.pinned or pin
            self._touch(entry)
            return entry, False
        limits = self.config
        if prepared.footprint > limits.max_total_bytes:
            raise ResourceExhausted(
                f"program: an estimated {prepared.footprint} bytes in memory exceed registry.max_total_bytes = "
                f"{limits.max_total_bytes}"
            )
        while len(self._entries) >= limits.max_programs:
            self._evict_one(
                f"all {len(self._entries)} programs are pinned (registry.max_programs = {limits.max_programs})"
            )
        while self.total_bytes + prepared.footprint > limits.max_total_bytes:
            self._evict_one(
                f"pinned programs hold an estimated {self.total_bytes} bytes and this one needs "
                f"{prepared.footprint} more (registry.max_total_bytes = {limits.max_total_bytes})"
            )
        entry = ProgramEntry.prepared(prepared, pin, _now_ms())
        self._entries[pid] = entry
        self.total_bytes += entry.footprint
        return entry, True

    def get(self, program_id: str) -> ProgramEntry:
        entry = self._entries.get(program_id)
        if entry is None:
            check_program_id(program_id)
            raise NotFound(
                f"program_id: unknown program {program_id} (never registered, released or evicted); register it again"
            )
        return entry

    def use(self, program_id: str) -> ProgramEntry:
        """``get`` and mark as most recently used (a Solve)."""
        entry = self.get(program_id)
        self._touch(entry)
        return entry

    def release(self, program_id: str) -> bool:
        """Forget a program (pinned or not); ``False`` when the id was unknown (idempotent)."""
        entry = self._entries.pop(program_id, None)
        if entry is None:
            check_program_id(program_id)
            return False
        self._removed(entry)
        return True

    def list(self) -> list[ProgramEntry]:
        """Entries, most recently used last."""
        return list(self._entries.values())

    def _touch(self, entry: ProgramEntry) -> None:
        entry.last_used_unix_ms = _now_ms()
        self._entries.move_to_end(entry.program_id)

    def _evict_one(self, why_full: str) -> None:
        victim = next((e for e in self._entries.values() if not e.pinned), None)
        if victim is None:
            raise ResourceExhausted(f"registry: {why_full}; release one first")
        del self._entries[victim.program_id]
        self.evictions += 1
        self._removed(victim)

    def _removed(self, entry: ProgramEntry) -> None:
        self.total_bytes -= entry.footprint
        if self._on_remove is not None:
            self._on_remove(entry)
