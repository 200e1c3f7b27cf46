"""The ``vfio`` transport: a real fpgacsp card through Linux VFIO (see docs/vfio.md)."""

from ._sys import Syscalls
from .transport import VfioError, VfioTransport, parse_bdf

__all__ = ["Syscalls", "VfioError", "VfioTransport", "parse_bdf"]
