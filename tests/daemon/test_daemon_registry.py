"""Program registry: content addressing, idempotence, size limits, LRU eviction of unpinned programs."""

from __future__ import annotations

import tracemalloc

import pytest
from fpgacsp_proto.encoding import encode_program, program_id
from fpgacsp_proto.isa import AllDiff, Neq, Program, make_program
from fpgacspd.config import RegistryConfig
from fpgacspd.errors import InvalidArgument, NotFound, ResourceExhausted
from fpgacspd.registry import ProgramEntry, ProgramRegistry, estimated_footprint


def chain(n: int, d: int = 3) -> Program:
    """A distinct small program per ``n``."""
    return make_program(n, d, [Neq(i, i + 1) for i in range(n - 1)])


def test_register_is_content_addressed_and_idempotent() -> None:
    reg = ProgramRegistry(RegistryConfig())
    entry, created = reg.register(chain(4))
    assert created and entry.program_id == program_id(chain(4))
    assert entry.encoded_bytes == len(encode_program(chain(4)))
    again, created_again = reg.register(make_program(4, 3, [Neq(0, 1), Neq(1, 2), Neq(2, 3)]))
    assert again is entry and not created_again
    assert len(reg) == 1
    assert (entry.num_vars, entry.domain_size, entry.num_constraints) == (4, 3, 3)


def test_a_huge_malformed_id_is_not_echoed_back_in_full() -> None:
    reg = ProgramRegistry(RegistryConfig())
    with pytest.raises(InvalidArgument) as info:
        reg.get("z" * 10_000)
    message = str(info.value)
    assert message == f"program_id: expected 64 lowercase hex digits (SHA-256), got {'z' * 80!r}... (10000 characters)"
    with pytest.raises(InvalidArgument, match=r"got 'xyz'$"):  # a short one is shown whole
        reg.get("xyz")


def test_get_unknown_is_not_found_and_malformed_is_invalid() -> None:
    reg = ProgramRegistry(RegistryConfig())
    with pytest.raises(NotFound, match=r"program_id: unknown program 0{64}"):
        reg.get("0" * 64)
    with pytest.raises(InvalidArgument, match="program_id: expected 64 lowercase hex digits"):
        reg.get("xyz")
    with pytest.raises(InvalidArgument, match="program_id"):
        reg.get("")


def test_release_is_idempotent_and_reports_removal() -> None:
    removed: list[ProgramEntry] = []
    reg = ProgramRegistry(RegistryConfig(), on_remove=removed.append)
    entry, _ = reg.register(chain(3), pin=True)
    assert reg.release(entry.program_id) is True
    assert reg.release(entry.program_id) is False
    assert removed == [entry]
    with pytest.raises(NotFound):
        reg.get(entry.program_id)


@pytest.mark.parametrize(
    ("limits", "program", "message"),
    [
        (RegistryConfig(max_vars=3), chain(4), "program.num_vars: 4 variables exceed registry.max_vars = 3"),
        (
            RegistryConfig(max_constraints=2),
            chain(4),
            "program.constraints: 3 constraints exceed registry.max_constraints = 2",
        ),
        (RegistryConfig(max_program_bytes=20), chain(4), "exceeds registry.max_program_bytes = 20"),
    ],
)
def test_size_limits_are_resource_exhausted_naming_the_limit(
    limits: RegistryConfig, program: Program, message: str
) -> None:
    reg = ProgramRegistry(limits)
    with pytest.raises(ResourceExhausted) as info:
        reg.register(program)
    assert message in info.value.message
    assert len(reg) == 0


def test_limits_at_the_boundary_are_accepted() -> None:
    p = chain(4)
    reg = ProgramRegistry(RegistryConfig(max_vars=4, max_constraints=3, max_program_bytes=len(encode_program(p))))
    assert reg.register(p)[1]


def test_lru_evicts_least_recently_used_unpinned() -> None:
    removed: list[str] = []
    reg = ProgramRegistry(RegistryConfig(max_programs=3), on_remove=lambda e: removed.append(e.program_id))
    a, _ = reg.register(chain(2))
    b, _ = reg.register(chain(3))
    c, _ = reg.register(chain(4))
    reg.use(a.program_id)  # a is now the most recently used; b the least
    d, _ = reg.register(chain(5))
    assert removed == [b.program_id]
    assert b.program_id not in reg and all(x.program_id in reg for x in (a, c, d))
    reg.register(chain(3))  # re-registering b evicts c, the least recently used now
    assert removed == [b.program_id, c.program_id]
    assert reg.evictions == 2


def test_registering_again_counts_as_use() -> None:
    reg = ProgramRegistry(RegistryConfig(max_programs=2))
    a, _ = reg.register(chain(2))
    b, _ = reg.register(chain(3))
    reg.register(chain(2))
    reg.register(chain(4))
    assert a.program_id in reg and b.program_id not in reg


def test_pinned_programs_are_never_evicted() -> None:
    reg = ProgramRegistry(RegistryConfig(max_programs=2))
    a, _ = reg.register(chain(2), pin=True)
    b, _ = reg.register(chain(3))
    c, _ = reg.register(chain(4))  # evicts b, not the older but pinned a
    assert a.program_id in reg and c.program_id in reg and b.program_id not in reg
    reg.register(chain(4), pin=True)  # pinning on a second registration
    assert c.pinned
    with pytest.raises(ResourceExhausted, match=r"registry: all 2 programs are pinned \(registry.max_programs = 2\)"):
        reg.register(chain(5))
    assert len(reg) == 2


def test_list_orders_by_last_use_and_counts_entries() -> None:
    reg = ProgramRegistry(RegistryConfig())
    a, _ = reg.register(make_program(3, 3, [AllDiff((0, 1, 2), True)]))
    b, _ = reg.register(chain(3))
    reg.use(a.program_id)
    assert [e.program_id for e in reg.list()] == [b.program_id, a.program_id]
    assert a.last_used_unix_ms >= a.registered_unix_ms > 0


def test_the_estimated_memory_of_held_programs_is_capped_by_lru_eviction() -> None:
    removed: list[str] = []
    one = estimated_footprint(len(encode_program(chain(10))))
    reg = ProgramRegistry(RegistryConfig(max_total_bytes=3 * one), on_remove=lambda e: removed.append(e.program_id))
    a, _ = reg.register(chain(10, 3))
    b, _ = reg.register(chain(10, 4))
    c, _ = reg.register(chain(10, 5))
    assert reg.total_bytes == a.footprint + b.footprint + c.footprint <= 3 * one
    d, _ = reg.register(chain(10, 6))  # one more of the same size: the least recently used goes
    assert removed == [a.program_id] and reg.total_bytes <= 3 * one
    reg.release(d.program_id)
    assert reg.total_bytes == b.footprint + c.footprint


def test_a_program_larger_than_the_whole_registry_or_than_what_pinned_ones_leave_is_resource_exhausted() -> None:
    one = estimated_footprint(len(encode_program(chain(10))))
    reg = ProgramRegistry(RegistryConfig(max_total_bytes=2 * one))
    with pytest.raises(ResourceExhausted, match=r"program: an estimated \d+ bytes in memory exceed "
                                                r"registry.max_total_bytes = \d+"):  # fmt: skip
        reg.register(chain(40))
    reg.register(chain(10, 3), pin=True)
    reg.register(chain(10, 4), pin=True)
    full = r"registry: pinned programs hold an estimated \d+ bytes and this one needs \d+ more \(registry.max_total"
    with pytest.raises(ResourceExhausted, match=full + r"_bytes = \d+\); release one"):
        reg.register(chain(10, 5))
    assert len(reg) == 2


@pytest.mark.parametrize(
    "program",
    [
        make_program(1000, 8, [Neq(i % 1000, (i + 1) % 1000, i % 5) for i in range(20_000)]),
        make_program(200, 64, [AllDiff(tuple(range(k, k + 60)), exact=False) for k in range(0, 140, 2)]),
        make_program(81, 9, [AllDiff(tuple(range(r * 9, r * 9 + 9))) for r in range(9)]),
    ],
    ids=["neq", "wide-alldiff", "rows"],
)
def test_the_footprint_estimate_bounds_what_a_held_program_really_takes(program: Program) -> None:
    """The estimate the memory cap counts must not undercount: measure the decoded program with tracemalloc."""
    from fpgacsp_proto.convert import program_from_proto, program_to_proto

    msg = program_to_proto(program)
    tracemalloc.start()
    try:
        decoded = program_from_proto(msg)
        taken, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = ProgramRegistry(RegistryConfig()).prepare(decoded).footprint
    assert taken <= estimate <= 6 * taken + 4096, (taken, estimate)  # never under, at most a few times over


def test_prepare_checks_and_names_without_changing_the_registry() -> None:
    reg = ProgramRegistry(RegistryConfig(max_constraints=2))
    prepared = reg.prepare(chain(3))
    assert prepared.program_id == program_id(chain(3)) and len(reg) == 0 and reg.total_bytes == 0
    with pytest.raises(ResourceExhausted, match=r"program.constraints: 3 constraints exceed registry.max_constraints"):
        reg.prepare(chain(4))
