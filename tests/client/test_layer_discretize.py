"""Discretizers, bitset conversion and priorities of the PyTorch layer, as pure functions (no solver)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fpgacsp.torch_layer import (
    ConfidentArgmax,
    Discretizer,
    Threshold,
    TopK,
    discretize_confident_argmax,
    discretize_threshold,
    discretize_top_k,
    domains_to_values,
    mask_to_domains,
    value_priorities,
)


def bits(*values: int) -> int:
    return sum(1 << v for v in values)


def logits(rows: list[list[float]], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One instance, one variable per row: ``[1, len(rows), D]``."""
    return torch.tensor([rows], dtype=dtype)


# --- Threshold ------------------------------------------------------------------------------------------


def test_threshold_keeps_values_at_or_above_p() -> None:
    x = logits([[2.0, -1.0, 0.0, -3.0], [5.0, 4.0, 3.0, 2.0]])
    assert discretize_threshold(x).tolist() == [[bits(0, 2), bits(0, 1, 2, 3)]]
    # p = 0.9: logit(0.9) = 2.197..., so only 2.0 < cutoff fails
    assert discretize_threshold(x, p=0.9).tolist() == [[bits(0), bits(0, 1, 2)]]


def test_threshold_equals_sigmoid_definition() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 20, 9, generator=gen, dtype=torch.float64) * 3
    for p in (0.1, 0.3, 0.5, 0.77):
        mask = Threshold(p).mask(x)
        direct = torch.sigmoid(x) >= p
        empty = ~direct.any(dim=-1)
        # where sigmoid keeps something the mask is exactly the definition
        assert torch.equal(mask[~empty], direct[~empty])


def test_threshold_empty_variable_keeps_its_argmax() -> None:
    x = logits([[-3.0, -1.0, -2.0], [-1.0, -5.0, -1.0]])
    # the second row ties between values 0 and 2: the lower value wins
    assert discretize_threshold(x).tolist() == [[bits(1), bits(0)]]


def test_threshold_relaxation_is_sigmoid() -> None:
    x = torch.randn(2, 3, 4)
    assert torch.equal(Threshold().relax(x), torch.sigmoid(x))


# --- TopK -----------------------------------------------------------------------------------------------


def test_top_k_keeps_the_k_largest() -> None:
    x = logits([[0.1, 0.9, 0.5, 0.7], [4.0, 3.0, 2.0, 1.0]])
    assert discretize_top_k(x, 2).tolist() == [[bits(1, 3), bits(0, 1)]]
    assert discretize_top_k(x, 4).tolist() == [[bits(0, 1, 2, 3)] * 2]


def test_top_k_ties_go_to_the_lower_value() -> None:
    x = logits([[1.0, 2.0, 2.0, 2.0, 0.0]])
    assert discretize_top_k(x, 1).tolist() == [[bits(1)]]
    assert discretize_top_k(x, 2).tolist() == [[bits(1, 2)]]


def test_top_k_larger_than_logits_domain() -> None:
    with pytest.raises(ValueError, match=r"^TopK: k = 5 is larger than the domain size 4 of the logits$"):
        discretize_top_k(torch.zeros(1, 2, 4), 5)


def test_top_k_relaxation_is_softmax() -> None:
    x = torch.randn(2, 3, 4)
    assert torch.equal(TopK(2).relax(x), torch.softmax(x, dim=-1))


# --- ConfidentArgmax ------------------------------------------------------------------------------------


def test_confident_argmax_fixes_only_confident_variables() -> None:
    x = logits([[0.0, 5.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [9.0, 9.0, 0.0, 0.0]])
    # row 0: p(1) = e^5 / (e^5 + 3) = 0.98; row 1: 0.475; row 2: two equal maxima, 0.5 each
    assert discretize_confident_argmax(x).tolist() == [[bits(1), bits(0, 1, 2, 3), bits(0, 1, 2, 3)]]
    assert discretize_confident_argmax(x, p=0.45).tolist() == [[bits(1), bits(1), bits(0)]]


def test_confident_argmax_equals_softmax_definition() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 30, 5, generator=gen, dtype=torch.float64) * 4
    probs = torch.softmax(x, dim=-1)
    mask = ConfidentArgmax(0.8).mask(x)
    sure = probs.amax(dim=-1) >= 0.8
    assert torch.equal(mask[sure], torch.nn.functional.one_hot(probs.argmax(-1), 5).bool()[sure])
    assert bool(mask[~sure].all())


def test_confident_argmax_relaxation_is_softmax() -> None:
    x = torch.randn(2, 3, 4)
    assert torch.equal(ConfidentArgmax().relax(x), torch.softmax(x, dim=-1))


# --- independence from the dtype ------------------------------------------------------------------------


@pytest.mark.parametrize("disc", [Threshold(0.4), TopK(3), ConfidentArgmax(0.6)], ids=repr)
def test_same_domains_in_every_dtype(disc: Discretizer) -> None:
    gen = torch.Generator().manual_seed(3)
    # values representable in bfloat16, so every dtype holds exactly the same numbers
    x = (torch.randn(4, 10, 7, generator=gen) * 3).to(torch.bfloat16)
    want = disc(x.to(torch.float64))
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        assert np.array_equal(disc(x.to(dtype)), want), dtype


# --- parameters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Threshold(0), r"^Threshold: p must be a number in \(0, 1\), got 0$"),
        (lambda: Threshold(1.0), r"^Threshold: p must be a number in \(0, 1\), got 1.0$"),
        (lambda: Threshold(float("nan")), r"^Threshold: p must be a number in \(0, 1\), got nan$"),
        (lambda: Threshold(True), r"^Threshold: p must be a number in \(0, 1\), got True$"),
        (lambda: Threshold("0.5"), r"^Threshold: p must be a number in \(0, 1\), got '0.5'$"),  # type: ignore[arg-type]
        (lambda: TopK(0), r"^TopK: k must be a positive integer, got 0$"),
        (lambda: TopK(1.5), r"^TopK: k must be a positive integer, got 1.5$"),  # type: ignore[arg-type]
        (lambda: TopK(True), r"^TopK: k must be a positive integer, got True$"),
        (lambda: ConfidentArgmax(0.0), r"^ConfidentArgmax: p must be a number in \(0, 1\], got 0.0$"),
        (lambda: ConfidentArgmax(1.5), r"^ConfidentArgmax: p must be a number in \(0, 1\], got 1.5$"),
    ],
)
def test_bad_discretizer_parameter(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_discretizers_are_values() -> None:
    assert Threshold(0.3) == Threshold(0.3) != Threshold(0.4)
    assert repr(TopK(2)) == "TopK(k=2)"
    assert hash(ConfidentArgmax()) == hash(ConfidentArgmax(0.9))


# --- standalone functions check their input -------------------------------------------------------------


def test_standalone_not_a_tensor() -> None:
    with pytest.raises(TypeError, match=r"^expected logits as a torch.Tensor, got list$"):
        discretize_threshold([[[0.0, 1.0]]])  # type: ignore[arg-type]


def test_standalone_incorrect_shape() -> None:
    with pytest.raises(ValueError, match=r"^expected logits of shape \[B, N, D\] = \[B, N, D\], got \[81, 9\]$"):
        discretize_top_k(torch.zeros(81, 9), 1)


def test_standalone_nan_input() -> None:
    x = torch.zeros(1, 2, 3)
    x[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"^logits must be finite: 1 NaN or infinite value\(s\), the first at"):
        discretize_confident_argmax(x)


# --- bitsets and values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("domain_size", [1, 7, 8, 9, 16, 33, 63, 64])
def test_mask_domain_roundtrip(domain_size: int) -> None:
    gen = torch.Generator().manual_seed(domain_size)
    mask = torch.rand(5, 6, domain_size, generator=gen) < 0.5
    mask[0, 0] = True  # all bits, including bit 63 for D = 64
    domains = mask_to_domains(mask)
    assert domains.dtype == np.uint64 and domains.shape == (5, 6)
    m = mask.numpy()
    for b in range(5):
        for n in range(6):
            assert int(domains[b, n]) == sum(1 << v for v in range(domain_size) if m[b, n, v])
    values = domains_to_values(domains, domain_size, like=torch.empty(0, dtype=torch.float64))
    assert values.dtype == torch.float64
    assert torch.equal(values.bool(), mask)


def test_domains_to_values_ignores_bits_above_domain_size() -> None:
    values = domains_to_values(np.array([[0b1101]], dtype=np.uint64), 3, like=torch.empty(0))
    assert values.tolist() == [[[1.0, 0.0, 1.0]]]


# --- priorities -----------------------------------------------------------------------------------------


def test_value_priorities_rank_by_probability() -> None:
    x = logits([[0.5, 3.0, -1.0, 2.0], [1.0, 1.0, 1.0, 1.0], [0.0, 100.0, 200.0, 0.0]])
    prios = value_priorities(x)
    assert prios.dtype == np.uint8 and prios.shape == (1, 3, 4)
    assert prios[0, 0].tolist() == [1, 3, 0, 2]
    assert prios[0, 1].tolist() == [3, 2, 1, 0]  # ties: the lower value first
    # softmax would underflow values 0, 1 and 3 to probability 0; the ranks still order 1 above 0 and 3
    assert prios[0, 2].tolist() == [1, 2, 3, 0]


def test_value_priorities_follow_softmax_order() -> None:
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 9, 9, generator=gen)
    prios = torch.from_numpy(value_priorities(x)).long()
    probs = torch.softmax(x, dim=-1)
    # the likeliest value of every variable has the top priority D - 1, and the order agrees pairwise
    assert torch.equal(prios.argmax(-1), probs.argmax(-1))
    assert bool(((prios[..., :, None] > prios[..., None, :]) == (probs[..., :, None] > probs[..., None, :])).all())
