"""The daemon's response encoding: timing in whole microseconds keeps real time's order."""

from __future__ import annotations

import numpy as np
import pytest
from fpgacspd.batcher import SolveAnswer
from fpgacspd.engine.batch import empty_result
from fpgacspd.wire import encode_solve


@pytest.mark.parametrize(
    ("queue_s", "device_s", "after_s"),
    [(81.6e-6, 3517.4e-6, 0.0), (0.5e-6, 0.5e-6, 0.0), (81.5e-6, 3517.5e-6, 1e-9), (1e-3, 2e-3, 0.4e-6)],
)
def test_total_us_is_never_below_queue_plus_device(queue_s: float, device_s: float, after_s: float) -> None:
    res = empty_result(1, 4)
    res.status[:] = 1
    answer = SolveAnswer(res, queue_s, device_s, queue_s + device_s + after_s, 1, 1)
    timing = encode_solve(answer, 4).timing
    assert timing.total_us >= timing.queue_us + timing.device_us
    assert abs(timing.total_us - (queue_s + device_s + after_s) * 1e6) < 1
    assert np.isclose(timing.queue_us, queue_s * 1e6, atol=1) and np.isclose(timing.device_us, device_s * 1e6, atol=1)
