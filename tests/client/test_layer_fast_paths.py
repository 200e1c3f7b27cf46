"""The layer's fast paths (issue 15) equal the implementations they replaced, bit for bit.

The old implementations are kept here as the reference: ``value_priorities`` was a stable descending argsort,
``mask_to_domains`` ``numpy.packbits`` into the bytes of a word. Logits are drawn with many ties (small integer
grids, signed zeros, all-equal rows) since ties are where a ranking without a sort could differ from it.
"""

from __future__ import annotations

import numpy as np
import torch
from fpgacsp.torch_layer import mask_to_domains, value_priorities
from fpgacsp.torch_layer._discretize import _PAIRWISE_MAX_D
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def reference_value_priorities(logits: torch.Tensor) -> np.ndarray:
    x = logits.detach()
    x = x if x.dtype == torch.float64 else x.to(torch.float32)
    d = x.shape[-1]
    order = torch.argsort(x, dim=-1, descending=True, stable=True)
    ranks = torch.arange(d - 1, -1, -1, device=x.device, dtype=torch.int64).expand_as(order)
    prio = torch.empty_like(order).scatter_(-1, order, ranks)
    return prio.to(device="cpu", dtype=torch.uint8).numpy()


def reference_mask_to_domains(mask: torch.Tensor) -> np.ndarray:
    m = mask.detach().to(device="cpu", dtype=torch.bool).numpy()
    packed = np.packbits(m, axis=-1, bitorder="little")
    words = np.zeros((*m.shape[:-1], 8), dtype=np.uint8)
    words[..., : packed.shape[-1]] = packed
    return np.ascontiguousarray(words).view("<u8")[..., 0].astype(np.uint64)


DTYPES = st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64])
# tie-heavy values: a few small integers and both zeros; or any float finite even in float16 (ties after rounding)
TIED = st.sampled_from([-2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0])
ANY = st.floats(-6e4, 6e4, allow_nan=False, allow_infinity=False)


@st.composite
def logits(draw: st.DrawFn, max_d: int = 20) -> torch.Tensor:
    b, n, d = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, max_d))
    elements = draw(st.sampled_from([TIED, ANY]))
    a = draw(hnp.arrays(np.float64, (b, n, d), elements=elements))
    return torch.from_numpy(a).to(draw(DTYPES))


@settings(max_examples=300, deadline=None)
@given(logits())
def test_value_priorities_equal_the_stable_argsort(x: torch.Tensor) -> None:
    got = value_priorities(x)
    want = reference_value_priorities(x)
    assert got.dtype == want.dtype == np.uint8 and got.shape == want.shape
    assert np.array_equal(got, want), (x, got, want)


def test_value_priorities_pairwise_path_covers_sudoku_and_falls_back_past_it() -> None:
    assert _PAIRWISE_MAX_D >= 9  # 9x9 Sudoku takes the fast path; the strategy above draws D up to 20, both sides
    x = torch.zeros(2, 3, _PAIRWISE_MAX_D + 1)
    assert np.array_equal(value_priorities(x), reference_value_priorities(x))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda b: st.integers(1, 5).flatmap(
            lambda n: st.integers(0, 64).flatmap(lambda d: hnp.arrays(np.bool_, (b, n, d)))
        )
    )
)
def test_mask_to_domains_equals_packbits(m: np.ndarray) -> None:
    mask = torch.from_numpy(m)
    got = mask_to_domains(mask)
    want = reference_mask_to_domains(mask)
    assert got.dtype == want.dtype == np.uint64 and got.shape == want.shape
    assert np.array_equal(got, want)


def test_mask_to_domains_sets_bit_63() -> None:
    mask = torch.zeros(1, 2, 64, dtype=torch.bool)
    mask[0, 0, 63] = True
    mask[0, 1] = True
    assert mask_to_domains(mask).tolist() == [[1 << 63, (1 << 64) - 1]]
    assert np.array_equal(mask_to_domains(mask), reference_mask_to_domains(mask))
