"""Content-addressed program registry with size limits and LRU eviction of unpinned programs.

A program is named by the SHA-256 of its canonical encoding, so registering is idempotent: the same
program from any client gets the same entry back. Registering has two halves: :meth:`ProgramRegistry.prepare`
checks the limits, encodes and hashes (pure and thread-safe: the daemon runs it off the event loop, since a
program of a million constraints takes seconds), and :meth:`ProgramRegistry.admit` enters the result, on the
event loop's thread (no locks). The registry bounds the programs it holds by count and by their estimated
memory (``max_total_bytes``). An entry stays usable by requests that already hold it after it is released or
evicted: in-flight solves finish, later ones get ``NOT_FOUND`` and the client re-registers.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256

from fpgacsp_proto.encoding import encode_program
from fpgacsp_proto.isa import Program

from .config import RegistryConfig
from .errors import InvalidArgument, NotFound, ResourceExhausted

_ID = re.compile(r"[0-9a-f]{64}")
# What a held program costs in memory per byte of its canonical encoding: its Python objects (constraint
# records, scope tuples) measured with tracemalloc at 7-8x for Sudoku, graph colouring and ALLDIFF-heavy
# programs and 11x for NEQ-only ones, rounded up. tests/daemon/test_daemon_registry.py checks the bound.
FOOTPRINT_PER_ENCODED_BYTE = 12
FOOTPRINT_BASE = 1024  # the entry itself


@dataclass(frozen=True)
class PreparedProgram:
    """A checked, encoded and named program, ready for :meth:`ProgramRegistry.admit`."""

    program: Program
    program_id: str
    encoded_bytes: int

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
    program: Program
    encoded_bytes: int
    pinned: bool
    registered_unix_ms: int
    last_used_unix_ms: int
    solves: int = 0

    @property
    def num_vars(self) -> int:
        return self.program.num_vars

    @property
    def domain_size(self) -> int:
        return self.program.domain_size

    @property
    def num_constraints(self) -> int:
        return len(self.program.constraints)

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

    def prepare(self, program: Program) -> PreparedProgram:
        """Check the per-program limits, encode and hash. Pure: safe on any thread, the registry unchanged."""
        limits = self.config
        if program.num_vars > limits.max_vars:
            raise ResourceExhausted(
                f"program.num_vars: {program.num_vars} variables exceed registry.max_vars = {limits.max_vars}"
            )
        if len(program.constraints) > limits.max_constraints:
            raise ResourceExhausted(
                f"program.constraints: {len(program.constraints)} constraints exceed "
                f"registry.max_constraints = {limits.max_constraints}"
            )
        encoded = encode_program(program)
        if len(encoded) > limits.max_program_bytes:
            raise ResourceExhausted(
                f"program: canonical encoding of {len(encoded)} bytes exceeds "
                f"registry.max_program_bytes = {limits.max_program_bytes}"
            )
        return PreparedProgram(program, sha256(encoded).hexdigest(), len(encoded))

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
        now = _now_ms()
        entry = ProgramEntry(pid, prepared.program, prepared.encoded_bytes, pin, now, now)
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
