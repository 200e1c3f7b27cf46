"""The host-memory half of the host-device protocol: job descriptors, completions, result records.

The registers (``_regmap``, from fpga_bitstream/regmap/fpgacsp.rdl) say where the rings are; these numpy
dtypes say what lies in them, byte for byte, little-endian, as docs/device.md draws them. The driver writes
descriptors and reads completions through them, and the device model does the opposite, so both sides share
this one definition (the RTL's DMA engine is written against docs/device.md).
"""

from __future__ import annotations

import enum
import zlib

import numpy as np


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


class DeviceError(enum.IntEnum):
    """``ERROR.CODE``: device-level errors; each sets ``STATUS.HALTED`` until a soft reset."""

    NONE = 0
    INTERNAL = 1  # an engine or sequencer fault (ECC, parity, state machine)
    DMA = 2  # a descriptor or completion ring access failed
    QUEUE_CONFIG = 3  # JQ/CQ size beyond CAP_QUEUE, or a doorbell past the ring


FLAG_PRIORITIES = 1  # RUN: ``prio_addr`` holds uint8[count, N, D] value priorities

DESCRIPTOR = np.dtype(
    [
        ("opcode", "<u1"),
        ("mode", "<u1"),  # RUN: fpgacsp_proto.isa.Mode
        ("slot", "<u2"),
        ("tag", "<u4"),  # echoed in the completion; never 0
        ("count", "<u4"),  # RUN: instances; LOAD: program bytes
        ("flags", "<u4"),
        ("src_addr", "<u8"),  # RUN: uint64[count, N] input domains; LOAD: the program bytes
        ("prio_addr", "<u8"),
        ("dst_addr", "<u8"),  # RUN: uint64[count, N] output domains; LOAD: program memory offset (64-aligned)
        ("result_addr", "<u8"),  # RUN: RESULT[count]
        ("node_limit", "<u8"),
        ("max_solutions", "<u8"),
    ]
)

COMPLETION = np.dtype(
    [
        ("tag", "<u4"),
        ("code", "<u2"),  # JobCode
        ("phase", "<u2"),  # bit 0: the ring's phase, flips at every wrap (the host needs no tail read)
        ("count", "<u4"),  # RUN: instances answered (== the descriptor's count)
        ("seq", "<u4"),  # completions written since reset, this one included
        ("cycles", "<u8"),  # the job's engine cycles (cycle model)
        ("reserved", "<u4"),
        ("crc", "<u4"),  # CRC-32 (zlib) of the 28 bytes before it: a corrupted completion never passes
    ]
)

RESULT = np.dtype(
    [
        ("status", "<u1"),  # fpgacsp_proto.isa.Status
        ("pad", "<u1", (3,)),
        ("solutions", "<u4"),
        ("nodes", "<u8"),
        ("sweeps", "<u8"),
    ]
)

_CRC_OFFSET = 28  # every byte of a completion before its crc field
assert DESCRIPTOR.itemsize == 64 and COMPLETION.itemsize == 32 and RESULT.itemsize == 24
assert COMPLETION.fields is not None and COMPLETION.fields["crc"][1] == _CRC_OFFSET

PROGRAM_ALIGN = 64  # LOAD offsets and the program memory allocator's granule


def completion_crc(entry: np.ndarray) -> int:
    """The CRC a well-formed completion carries: over every byte before the ``crc`` field."""
    raw = np.asarray(entry).reshape(()).tobytes()
    return zlib.crc32(raw[:_CRC_OFFSET])


def cycle_count(sweeps: int, nodes: int, constraints: int, lanes: int) -> int:
    """The cycle model: a sweep evaluates every propagator, ``lanes`` per cycle, plus one cycle to AND the
    outputs; a search node costs two more (save a frame, pick the branching variable)."""
    per_sweep = -(-max(constraints, 1) // max(lanes, 1)) + 1
    return sweeps * per_sweep + 2 * nodes
