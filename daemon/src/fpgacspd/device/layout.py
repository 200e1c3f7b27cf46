"""The host-memory half of the host-device protocol: job descriptors, completions, result records.

The registers (``_regmap``, from fpga_bitstream/regmap/fpgacsp.rdl) say where the rings are; these layouts
say what lies in them, byte for byte, little-endian, as docs/device.md draws them. The driver writes
descriptors and reads completions through them, and the device model does the opposite, so both sides share
this one definition (the RTL's DMA engine is written against docs/device.md). Ring entries are packed with
``struct`` (one call per entry, on the batch-1 latency path); result records are a numpy dtype (arrays).
"""

from __future__ import annotations

import enum
import struct
import zlib
from typing import NamedTuple

import numpy as np

_CRC_OFFSET = 28  # every byte of a completion before its crc field


class Opcode(enum.IntEnum):
    NOP = 0  # completes at once; the driver's queue check after a reset
    LOAD = 1  # DMA a canonical program encoding into program memory and bind it to a slot
    UNLOAD = 2  # free a slot
    RUN = 3  # solve ``count`` instances of a slot's program


class JobCode(enum.IntEnum):
    """A completion's ``code``: how one job ended. Job errors do not halt the device."""

    OK = 0
    BAD_OPCODE = 1
    BAD_SLOT = 2  # RUN or UNLOAD of a slot with no program
    BAD_PROGRAM = 3  # LOAD of bytes that do not decode to a valid ISA v1 program
    OVER_CAPABILITY = 4  # more variables, a larger domain or more instances than the CAP_* registers allow
    BAD_ADDRESS = 5  # a buffer address that is not mapped, or a program range outside program memory
    ABORTED = 6  # RUN stopped by CTRL.ABORT before it finished; no results were written


class DeviceError(enum.IntEnum):
    """``ERROR.CODE``: device-level errors; each sets ``STATUS.HALTED`` until a soft reset."""

    NONE = 0
    INTERNAL = 1  # an engine or sequencer fault (ECC, parity, state machine)
    DMA = 2  # a descriptor or completion ring access failed
    QUEUE_CONFIG = 3  # JQ/CQ size beyond CAP_QUEUE, or a doorbell past the ring


FLAG_PRIORITIES = 1  # RUN: ``prio_addr`` holds uint8[count, N, D] value priorities

_DESCRIPTOR = struct.Struct("<BBHIII6Q")
_COMPLETION = struct.Struct("<IHHIIQII")


class Descriptor(NamedTuple):
    """A job descriptor, 64 bytes in the job ring (docs/device.md draws it)."""

    opcode: int = 0  # Opcode
    mode: int = 0  # RUN: fpgacsp_proto.isa.Mode
    slot: int = 0
    tag: int = 0  # echoed in the completion; never 0
    items: int = 0  # RUN: instances; LOAD: program bytes
    flags: int = 0
    src_addr: int = 0  # RUN: uint64[count, N] input domains; LOAD: the program bytes
    prio_addr: int = 0
    dst_addr: int = 0  # RUN: uint64[count, N] output domains; LOAD: program memory offset (64-aligned)
    result_addr: int = 0  # RUN: RESULT[count]
    node_limit: int = 0
    max_solutions: int = 0

    def pack_into(self, ring: np.ndarray, offset: int) -> None:
        _DESCRIPTOR.pack_into(ring.data, offset, *self)

    @classmethod
    def unpack_from(cls, ring: np.ndarray, offset: int = 0) -> Descriptor:
        return cls._make(_DESCRIPTOR.unpack_from(ring.data, offset))


class Completion(NamedTuple):
    """A completion, 32 bytes in the completion ring."""

    tag: int
    code: int  # JobCode
    phase: int  # bit 0: the ring's phase, flips at every wrap (the host needs no tail read)
    items: int  # RUN: instances answered (== the descriptor's items)
    seq: int  # completions written since reset, this one included
    cycles: int  # the job's engine cycles (cycle model)
    reserved: int = 0
    crc: int = 0  # CRC-32 (zlib) of the 28 bytes before it: a corrupted completion never passes

    def sealed(self) -> Completion:
        """This completion with its CRC filled in."""
        raw = _COMPLETION.pack(*self[:-1], 0)
        return self._replace(crc=zlib.crc32(raw[:_CRC_OFFSET]))

    def pack_into(self, ring: np.ndarray, offset: int) -> None:
        _COMPLETION.pack_into(ring.data, offset, *self)

    @classmethod
    def unpack_from(cls, ring: np.ndarray, offset: int = 0) -> Completion:
        return cls._make(_COMPLETION.unpack_from(ring.data, offset))


RESULT = np.dtype(
    [
        ("status", "<u1"),  # fpgacsp_proto.isa.Status
        ("pad", "<u1", (3,)),
        ("solutions", "<u4"),
        ("nodes", "<u8"),
        ("sweeps", "<u8"),
    ]
)

DESCRIPTOR_SIZE = _DESCRIPTOR.size
COMPLETION_SIZE = _COMPLETION.size
assert DESCRIPTOR_SIZE == 64 and COMPLETION_SIZE == 32 and RESULT.itemsize == 24

PROGRAM_ALIGN = 64  # LOAD offsets and the program memory allocator's granule


def completion_crc(ring: np.ndarray, offset: int) -> int:
    """The CRC the completion at ``offset`` must carry: over every byte before its ``crc`` field."""
    return zlib.crc32(ring.data[offset : offset + _CRC_OFFSET])


def cycle_count(sweeps: int, nodes: int, constraints: int, lanes: int) -> int:
    """The cycle model: a sweep evaluates every propagator, ``lanes`` per cycle, in a two-stage pipeline (one cycle
    more for the last group's outputs), plus one cycle to check and commit the ANDed outputs; a search node costs two
    more (save a frame, pick the branching variable). The RTL engine (fpga_bitstream/rtl) runs exactly this."""
    per_sweep = -(-max(constraints, 1) // max(lanes, 1)) + 2
    return sweeps * per_sweep + 2 * nodes
