"""Packed-bitset codec and the domain/priority checks both sides run before any solving.

The wire word is the smallest of 8/16/32/64 bits that holds D values, little-endian, row-major [B, N];
the boundaries D = 8/9, 16/17, 32/33 and 64 are where an off-by-one would corrupt every request.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from fpgacsp_proto.bitset import (
    DomainError,
    check_domains,
    check_priorities,
    full_domains,
    pack_domains,
    pack_priorities,
    singleton_values,
    unpack_domains,
    unpack_priorities,
    word_dtype,
)
from fpgacsp_proto.isa import make_program
from fpgacspd.engine import FastEngine, reference_solve_batch
from hypothesis import given
from hypothesis import strategies as st

HIGH_BITS = "has bits set at or above domain_size 3"


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize(
    ("d", "bits"),
    [(1, 8), (8, 8), (9, 16), (16, 16), (17, 32), (32, 32), (33, 64), (63, 64), (64, 64)],
)
def test_word_dtype_boundaries(d: int, bits: int) -> None:
    dt = word_dtype(d)
    assert dt == np.dtype(f"<u{bits // 8}")
    assert dt.byteorder != ">"


@pytest.mark.parametrize("d", [0, 65, -1])
def test_word_dtype_rejects_bad_domain_size(d: int) -> None:
    with pytest.raises(DomainError, match=exactly(f"domain_size: must be in [1, 64], got {d}")):
        word_dtype(d)


@pytest.mark.parametrize(
    ("d", "word", "wire"),
    [
        (8, 0x80, b"\x80"),
        (9, 0x1FF, b"\xff\x01"),
        (16, 0x8001, b"\x01\x80"),
        (17, 0x10000, b"\x00\x00\x01\x00"),
        (32, 0x80000000, b"\x00\x00\x00\x80"),
        (33, 1 << 32, b"\x00\x00\x00\x00\x01\x00\x00\x00"),
        (64, 1 << 63, b"\x00" * 7 + b"\x80"),
    ],
)
def test_pack_is_little_endian_and_minimal(d: int, word: int, wire: bytes) -> None:
    doms = np.array([[word]], dtype=np.uint64)
    assert pack_domains(doms, d) == wire
    assert unpack_domains(wire, 1, 1, d).tolist() == [[word]]


@st.composite
def domain_arrays(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    d = draw(st.sampled_from([1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64]))
    b, n = draw(st.integers(0, 5)), draw(st.integers(1, 6))
    words = [[draw(st.integers(0, (1 << d) - 1)) for _ in range(n)] for _ in range(b)]
    return np.array(words, dtype=np.uint64).reshape(b, n), d


@given(domain_arrays())
def test_pack_round_trip(sample: tuple[np.ndarray, int]) -> None:
    doms, d = sample
    b, n = doms.shape
    data = pack_domains(doms, d)
    assert len(data) == b * n * word_dtype(d).itemsize
    back = unpack_domains(data, b, n, d)
    assert back.dtype == np.uint64
    assert np.array_equal(back, doms)


def test_unpack_rejects_wrong_length() -> None:
    message = "domains: expected 6 bytes (2 x 3 words of 1 bytes), got 5"
    with pytest.raises(DomainError, match=exactly(message)):
        unpack_domains(b"\x00" * 5, 2, 3, 4)
    message = "initial: expected 16 bytes (1 x 2 words of 8 bytes), got 17"
    with pytest.raises(DomainError, match=exactly(message)):
        unpack_domains(b"\x00" * 17, 1, 2, 40, field="initial")


def test_unpack_rejects_stray_high_bits() -> None:
    with pytest.raises(DomainError, match=exactly("domains[0, 1] = 0x8 has bits set at or above domain_size 3")):
        unpack_domains(b"\x07\x08", 1, 2, 3)


def test_check_domains_accepts_and_converts() -> None:
    arr = np.array([[1, 2], [3, 0]], dtype=np.int32)
    out = check_domains(arr, 2, 2)
    assert out.dtype == np.uint64 and out.flags.c_contiguous
    assert out.tolist() == [[1, 2], [3, 0]]
    top = np.array([[np.uint64(1 << 63)]], dtype=np.uint64)
    assert check_domains(top, 1, 64).tolist() == [[1 << 63]]


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.zeros(3, dtype=np.uint64), "domains: expected shape [B, 3], got [3]"),
        (np.zeros((2, 4), dtype=np.uint64), "domains: expected shape [B, 3], got [2, 4]"),
        (np.zeros((1, 1, 3), dtype=np.uint64), "domains: expected shape [B, 3], got [1, 1, 3]"),
        (np.zeros((2, 3), dtype=np.float64), "domains: expected an unsigned integer array, got dtype float64"),
        (np.zeros((2, 3), dtype=bool), "domains: expected an unsigned integer array, got dtype bool"),
        (np.array([[1, -1, 1]], dtype=np.int64), "domains: negative words are not bitsets"),
        (np.array([[1, 1, 1], [1, 8, 1]], dtype=np.uint64), f"domains[1, 1] = 0x8 {HIGH_BITS}"),
        (np.array([[0, 0, 1 << 40]], dtype=np.uint64), f"domains[0, 2] = 0x10000000000 {HIGH_BITS}"),
    ],
)
def test_check_domains_rejects(arr: np.ndarray, message: str) -> None:
    with pytest.raises(DomainError, match=exactly(message)):
        check_domains(arr, 3, 3)


def test_check_priorities() -> None:
    assert check_priorities(None, 2, 3, 4) is None
    ok = np.zeros((2, 3, 4), dtype=np.uint8)
    assert check_priorities(ok, 2, 3, 4) is not None
    with pytest.raises(DomainError, match=exactly("priorities: expected shape [2, 3, 4], got [2, 3]")):
        check_priorities(np.zeros((2, 3), dtype=np.uint8), 2, 3, 4)
    with pytest.raises(DomainError, match=exactly("priorities: expected shape [2, 3, 4], got [1, 3, 4]")):
        check_priorities(np.zeros((1, 3, 4), dtype=np.uint8), 2, 3, 4)
    with pytest.raises(DomainError, match=exactly("priorities: expected dtype uint8, got int64")):
        check_priorities(np.zeros((2, 3, 4), dtype=np.int64), 2, 3, 4)


def test_priorities_wire_round_trip() -> None:
    prios = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = pack_priorities(prios)
    assert data == bytes(range(24))
    back = unpack_priorities(data, 2, 3, 4)
    assert back is not None and np.array_equal(back, prios)
    assert unpack_priorities(b"", 2, 3, 4) is None
    with pytest.raises(DomainError, match=exactly("priorities: expected 24 bytes (uint8[2, 3, 4]), got 23")):
        unpack_priorities(data[:-1], 2, 3, 4)


@pytest.mark.parametrize("d", [1, 8, 9, 63, 64])
def test_full_domains(d: int) -> None:
    doms = full_domains(2, 3, d)
    assert doms.dtype == np.uint64 and doms.shape == (2, 3)
    assert set(doms.ravel().tolist()) == {(1 << d) - 1}


def test_singleton_values() -> None:
    doms = np.array([[1, 2, 3, 0, 1 << 63, (1 << 63) | 1, 1 << 40]], dtype=np.uint64)
    assert singleton_values(doms).tolist() == [[0, 1, -1, -1, 63, -1, 40]]
    assert singleton_values(doms).dtype == np.int64


def test_engines_reject_bad_inputs_alike(engine: FastEngine) -> None:
    """The reference batch and the fast core run the same checks, so a bad request fails the same way."""
    p = make_program(2, 3, [])
    bad_inputs = [
        (np.zeros((1, 3), dtype=np.uint64), None),
        (np.array([[1, 9]], dtype=np.uint64), None),
        (np.array([[1, 1]], dtype=np.uint64), np.zeros((1, 2, 2), dtype=np.uint8)),
        (np.array([[1, 1]], dtype=np.uint64), np.zeros((1, 2, 3), dtype=np.int8)),
    ]
    for doms, prios in bad_inputs:
        with pytest.raises(DomainError) as fast_err:
            engine.solve(p, doms, prios)
        with pytest.raises(DomainError) as ref_err:
            reference_solve_batch(p, doms, prios)
        assert str(fast_err.value) == str(ref_err.value)
