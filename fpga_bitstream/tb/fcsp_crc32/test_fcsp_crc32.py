"""fcsp_crc32 against zlib: the card seals every completion with it, and the driver checks it with ``zlib.crc32``.

Combinational: chain the unit over a message 8 bytes at a time (the last word's byte count 0..8, as the card does
for the 28 covered bytes of a completion), from 0xFFFFFFFF, and invert; the result must equal ``zlib.crc32`` of the
message. Seeded random messages of every length 0..64 and real completions packed by ``fpgacspd.device.layout``.
``FCSP_UNIT_CASES`` random messages (default 2000), ``FCSP_UNIT_SEED`` the seed.
"""

from __future__ import annotations

import os
import random
import zlib
from pathlib import Path
from typing import Any

import cocotb
import numpy as np
from cocotb.triggers import Timer
from fpgacspd.device.layout import Completion

HERE = Path(__file__).resolve().parent


class TB:
    def __init__(self, dut: Any) -> None:
        self.dut = dut

    async def crc(self, message: bytes) -> int:
        state = 0xFFFF_FFFF
        for start in range(0, max(len(message), 1), 8):
            chunk = message[start : start + 8]
            self.dut.crc_in.value = state
            self.dut.data.value = int.from_bytes(chunk.ljust(8, b"\0"), "little")
            self.dut.nbytes.value = len(chunk)
            await Timer(1, "ns")
            state = int(self.dut.crc_out.value)
        return state ^ 0xFFFF_FFFF

    async def check(self, message: bytes, name: str) -> None:
        got, want = await self.crc(message), zlib.crc32(message)
        assert got == want, f"{name}: (rtl != zlib) {got:#010x} != {want:#010x} over {message.hex()}"


@cocotb.test()
async def random_messages_equal_zlib(dut: Any) -> None:
    tb = TB(dut)
    seed, cases = int(os.environ["FCSP_SEED"]), int(os.environ["FCSP_CASES"])
    for n in range(cases):
        rng = random.Random(f"{seed}:{n}")
        await tb.check(rng.randbytes(rng.randint(0, 64)), f"seed {seed} case {n}")


@cocotb.test()
async def completions_equal_their_sealed_crc(dut: Any) -> None:
    tb = TB(dut)
    for n, entry in enumerate(
        [Completion(1, 0, 1, 0, 1, 1), Completion(0xFFFFFFFF, 6, 0, 65536, 0xFFFFFFFF, (1 << 64) - 1),
         Completion(0x1234, 3, 1, 17, 99, 123456789)]
    ):  # fmt: skip
        sealed = entry.sealed()
        raw = sealed._replace(crc=0)
        message = np.zeros(32, np.uint8)
        raw.pack_into(message, 0)
        assert await tb.crc(message[:28].tobytes()) == sealed.crc, f"completion {n}: {entry}"


def test_fcsp_crc32() -> None:
    import sim

    env = {"FCSP_SEED": os.environ.get("FCSP_UNIT_SEED", "1"), "FCSP_CASES": os.environ.get("FCSP_UNIT_CASES", "2000")}
    sim.run("fcsp_crc32", "test_fcsp_crc32", HERE, {}, env, card=True)
