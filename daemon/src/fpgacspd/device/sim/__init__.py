"""The ``sim`` transport: a model of the card (registers, DMA, sequencer, interrupts) in this process."""

from .faults import Fault, FaultPlan
from .model import SimDevice, SimParams
from .transport import SimTransport

__all__ = ["Fault", "FaultPlan", "SimDevice", "SimParams", "SimTransport"]
