"""One request as one value: merging requests into a device batch and splitting its answer back."""

from __future__ import annotations

import numpy as np
import pytest
from fpgacsp_proto.isa import Mode, Neq, make_program
from fpgacspd.engine import BatchResult, SolveOptions
from fpgacspd.errors import DeviceFailure
from fpgacspd.registry import ProgramEntry
from fpgacspd.solve_batch import SolveBatch

SOLVE = SolveOptions()
A = ProgramEntry.of(make_program(3, 4, [Neq(0, 1), Neq(1, 2)]))


def item(rows: int, first: int, prio: int | None = None, options: SolveOptions = SOLVE) -> SolveBatch:
    domains = np.arange(first, first + rows * 3, dtype=np.uint64).reshape(rows, 3)
    priorities = None if prio is None else np.full((rows, 3, 4), prio, np.uint8)
    return SolveBatch(A, domains, priorities, options)


def result_of(batch: SolveBatch) -> BatchResult:
    b = batch.size
    return BatchResult(batch.domains.copy(), np.ones(b, np.uint8), np.arange(b), np.zeros(b, np.int64), np.ones(b))


def test_merged_rows_keep_request_order_and_split_back_to_each_request() -> None:
    items = [item(1, 0), item(2, 100), item(3, 200)]
    merged = SolveBatch.merge(items)
    assert merged.size == 6 and merged.priorities is None and merged.key == items[0].key
    parts = SolveBatch.split(result_of(merged), items)
    for part, it in zip(parts, items, strict=True):
        np.testing.assert_array_equal(part.domains, it.domains)
    assert [p.nodes.tolist() for p in parts] == [[0], [1, 2], [3, 4, 5]]


def test_requests_without_priorities_get_zeros_beside_those_with_them() -> None:
    merged = SolveBatch.merge([item(1, 0), item(2, 10, prio=7)])
    assert merged.priorities is not None and merged.priorities.shape == (3, 3, 4)
    assert (merged.priorities[0] == 0).all() and (merged.priorities[1:] == 7).all()


def test_a_single_request_is_its_own_batch_unchanged() -> None:
    one = item(2, 0)
    assert SolveBatch.merge([one]) is one
    res = result_of(one)
    assert SolveBatch.split(res, [one])[0] is res


def test_only_one_key_merges() -> None:
    with pytest.raises(ValueError, match="one program and one set of options"):
        SolveBatch.merge([item(1, 0), item(1, 3, options=SolveOptions(Mode.PROPAGATE))])


def test_a_device_answer_of_the_wrong_length_is_a_device_failure() -> None:
    items = [item(1, 0), item(2, 10)]
    short = result_of(item(2, 0))
    with pytest.raises(DeviceFailure, match="returned 2 rows for a batch of 3"):
        SolveBatch.split(short, items)
