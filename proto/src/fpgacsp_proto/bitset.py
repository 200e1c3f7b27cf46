"""Packed-bitset codec for domains and the checks both sides run on domain and priority arrays.

On the wire a domain is one little-endian unsigned word per variable, of the smallest width among
8/16/32/64 bits that holds ``D`` values, row-major ``[B, N]``. In memory both sides use ``uint64[B, N]``
(bit ``v`` set means value ``v`` is still possible), so the engine never sees the wire width.
"""

from __future__ import annotations

import numpy as np

from .isa import MAX_DOMAIN_SIZE


class DomainError(ValueError):
    """A domain or priority array does not fit the program; the message names the field and problem."""


def word_dtype(domain_size: int) -> np.dtype:
    """Smallest little-endian unsigned word that holds ``domain_size`` bits."""
    if not 1 <= domain_size <= MAX_DOMAIN_SIZE:
        raise DomainError(f"domain_size: must be in [1, {MAX_DOMAIN_SIZE}], got {domain_size}")
    for bits in (8, 16, 32, 64):
        if domain_size <= bits:
            return np.dtype(f"<u{bits // 8}")
    raise AssertionError("unreachable")


def full_domains(batch: int, num_vars: int, domain_size: int) -> np.ndarray:
    """``uint64[B, N]`` with every value possible."""
    return np.full((batch, num_vars), (1 << domain_size) - 1, dtype=np.uint64)


def check_domains(domains: np.ndarray, num_vars: int, domain_size: int, field: str = "domains") -> np.ndarray:
    """Validate a ``[B, N]`` domain array and return it as C-contiguous ``uint64``."""
    arr = np.asarray(domains)
    if arr.ndim != 2 or arr.shape[1] != num_vars:
        raise DomainError(f"{field}: expected shape [B, {num_vars}], got {list(arr.shape)}")
    if arr.dtype.kind not in "ui":
        raise DomainError(f"{field}: expected an unsigned integer array, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise DomainError(f"{field}: negative words are not bitsets")
    arr = np.ascontiguousarray(arr, dtype=np.uint64)
    if domain_size < 64 and arr.size:
        high = arr >> np.uint64(domain_size)
        if high.any():  # where, only when there is something to report (argwhere costs 15 us on a batch of 1)
            b, n = (int(x) for x in np.argwhere(high)[0])
            raise DomainError(
                f"{field}[{b}, {n}] = {int(arr[b, n]):#x} has bits set at or above domain_size {domain_size}"
            )
    return arr


def check_priorities(priorities: np.ndarray | None, batch: int, num_vars: int, domain_size: int) -> np.ndarray | None:
    """Validate optional ``uint8[B, N, D]`` branching priorities (higher is tried first)."""
    if priorities is None:
        return None
    arr = np.asarray(priorities)
    if arr.shape != (batch, num_vars, domain_size):
        raise DomainError(f"priorities: expected shape {[batch, num_vars, domain_size]}, got {list(arr.shape)}")
    if arr.dtype != np.uint8:
        raise DomainError(f"priorities: expected dtype uint8, got {arr.dtype}")
    return np.ascontiguousarray(arr)


def pack_domains(domains: np.ndarray, domain_size: int) -> bytes:
    """``uint64[B, N]`` to wire bytes."""
    arr = np.asarray(domains)
    return np.ascontiguousarray(arr, dtype=np.uint64).astype(word_dtype(domain_size)).tobytes()


def unpack_domains(data: bytes, batch: int, num_vars: int, domain_size: int, field: str = "domains") -> np.ndarray:
    """Wire bytes to ``uint64[B, N]``; rejects a wrong length or stray high bits."""
    dt = word_dtype(domain_size)
    expected = batch * num_vars * dt.itemsize
    if len(data) != expected:
        raise DomainError(
            f"{field}: expected {expected} bytes ({batch} x {num_vars} words of {dt.itemsize} bytes), got {len(data)}"
        )
    words = np.frombuffer(data, dtype=dt).reshape(batch, num_vars)
    return check_domains(words, num_vars, domain_size, field)


def pack_priorities(priorities: np.ndarray) -> bytes:
    return np.ascontiguousarray(priorities, dtype=np.uint8).tobytes()


def unpack_priorities(data: bytes, batch: int, num_vars: int, domain_size: int) -> np.ndarray | None:
    if not data:
        return None
    expected = batch * num_vars * domain_size
    if len(data) != expected:
        raise DomainError(
            f"priorities: expected {expected} bytes (uint8[{batch}, {num_vars}, {domain_size}]), got {len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(batch, num_vars, domain_size).copy()


def singleton_values(domains: np.ndarray) -> np.ndarray:
    """Value of each singleton domain, -1 elsewhere (int64, same shape)."""
    d = np.asarray(domains, dtype=np.uint64)
    single = (d != 0) & ((d & (d - np.uint64(1))) == 0)
    values = np.full(d.shape, -1, dtype=np.int64)
    # log2 of a power of two is exact in float64 for all 64 bit positions
    values[single] = np.log2(d[single].astype(np.float64)).astype(np.int64)
    return values
