"""The frames between the ``rtl`` transport and the cocotb bridge that runs the card's RTL (card_bridge_cocotb.py).

One socket carries them both ways. The transport sends fixed-size requests and waits for one ``VALUE`` reply each;
the bridge also sends ``IRQ`` frames on its own whenever the card signals an MSI-X vector, and one ``READY`` when
the simulation is up. Host memory does not travel here: both sides map the same DMA arena file, and the card reaches
it at ``IOVA_BASE + offset``.
"""

from __future__ import annotations

import enum
import struct

REQUEST = struct.Struct("<BQQ")  # op, a, b
REPLY = struct.Struct("<BQ")  # kind, value
IOVA_BASE = 0x1_0000_0000  # above 4 GiB, as the sim transport: a driver that drops an address's high half is caught


class Op(enum.IntEnum):
    READ = 1  # a: BAR0 offset -> VALUE: the register
    WRITE = 2  # a: BAR0 offset, b: value
    MAP = 3  # a: iova, b: size: the card may reach [a, a + b)
    UNMAP = 4  # a: iova
    FUNCTION_RESET = 5  # the card's rst, as a power-on
    FAULT = 6  # a: FaultKind, b: times | instance count << 32 (0: any RUN job)
    CYCLES = 7  # -> VALUE: clock cycles simulated so far
    CLOSE = 8


class Reply(enum.IntEnum):
    VALUE = 0
    IRQ = 1  # value: the vector
    READY = 2


class FaultKind(enum.IntEnum):
    """The faults the card's testbench hooks inject (fcsp_card's ``inject_*``) or the bridge plays (a lost MSI)."""

    HANG = 1
    ERROR = 2
    CORRUPT = 3
    DROP_IRQ = 4
