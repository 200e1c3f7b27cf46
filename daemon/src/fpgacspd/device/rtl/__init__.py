"""The ``rtl`` transport: the card's RTL (fpga_bitstream/rtl/fcsp_card.sv) in Verilator, under the same driver."""

from .protocol import FaultKind
from .transport import RtlTransport, card_params

__all__ = ["FaultKind", "RtlTransport", "card_params"]
