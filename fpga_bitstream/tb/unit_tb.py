"""What the unit testbenches share: the reference model, imported on its own, and one record through a unit of two
pipeline stages (fcsp_alldiff, fcsp_lane)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from cocotb.triggers import RisingEdge, Timer


def load_reference() -> ModuleType:
    """engine/reference.py on its own: imported through its package it brings the numba kernels along (about 4 s at
    every simulator start), and it needs only numpy and fpgacsp_proto."""
    if "fcsp_reference" not in sys.modules:
        package = importlib.util.find_spec("fpgacspd")
        assert package is not None and package.submodule_search_locations is not None
        path = Path(next(iter(package.submodule_search_locations))) / "engine" / "reference.py"
        spec = importlib.util.spec_from_file_location("fcsp_reference", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # before it runs: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["fcsp_reference"]


if TYPE_CHECKING:
    from fpgacspd.engine import reference
else:
    reference = load_reference()

Record = TypeVar("Record")


def pack(doms: list[int], dw: int) -> int:
    """Domains as the engine's wires carry them: position i at [i*dw +: dw]."""
    return sum(x << (i * dw) for i, x in enumerate(doms))


async def through_two_stages(
    dut: Any, stage1: Callable[[Record], None], record: Record, doms: list[int], next_record: Record, ms: int, dw: int
) -> tuple[list[int], bool]:
    """Give ``record`` to the first stage, take a clock edge, then give ``next_record`` to the first stage and the
    record's ``doms`` to ``doms_late`` (as the engine does: its domains do not change within a sweep) and read the
    outputs, which must be the registered record's, not those of what the first stage sees by then."""
    stage1(record)
    await RisingEdge(dut.clk)
    await Timer(1, "ns")  # past the edge: the first stage holds the record
    stage1(next_record)
    dut.doms_late.value = pack(doms, dw)
    await Timer(1, "ns")
    outs = int(dut.outs.value)
    mask = (1 << dw) - 1
    return [outs >> (i * dw) & mask for i in range(ms)], bool(dut.conflict.value)
