"""The types of the generated register definitions (``_regmap.py``, generated from fpga_bitstream/regmap).

A :class:`Field` knows where it lives in its 32-bit register and how software may access it (SystemRDL's
``sw`` and ``onwrite`` properties), so the driver can compose register values by field name and the device
model can implement each register's write semantics from the same definitions the RTL is generated from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int
    sw: str  # SystemRDL sw access: "r", "w", "rw"
    reset: int
    onwrite: str | None = None  # "woclr": writing 1 clears the bit
    singlepulse: bool = False  # a write of 1 acts once and the field reads back 0

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb

    def get(self, register_value: int) -> int:
        """This field's value in ``register_value``."""
        return (register_value >> self.lsb) & ((1 << self.width) - 1)

    def put(self, value: int) -> int:
        """``value`` placed in this field of an otherwise zero register value."""
        if not 0 <= value < 1 << self.width:
            raise ValueError(f"{self.name}: {value} does not fit in {self.width} bits")
        return value << self.lsb

    @property
    def writable(self) -> bool:
        return "w" in self.sw
