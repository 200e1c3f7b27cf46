"""Build the card's RTL (``fcsp_card``) with Verilator and run it behind the ``rtl`` transport's socket.

Started by ``fpgacspd.device.rtl.RtlTransport`` (never by hand), with the transport's socket in
``FCSP_BRIDGE_SOCKET``, its DMA arena file in ``FCSP_BRIDGE_ARENA`` and the card's Verilog parameters in
``FCSP_CARD_PARAMS`` (JSON): it builds the card once per parameter set (cached under fpga_bitstream/sim_build/,
like every testbench: ``sim.py``) and runs ``card_bridge_cocotb``, which serves the transport until it closes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sim  # noqa: E402


def main() -> None:
    params = json.loads(os.environ["FCSP_CARD_PARAMS"])
    env = {k: os.environ[k] for k in ("FCSP_BRIDGE_SOCKET", "FCSP_BRIDGE_ARENA", "FCSP_BRIDGE_ARENA_SIZE")}
    sim.run("fcsp_card", "card_bridge_cocotb", HERE, params, extra_env=env, card=True)


if __name__ == "__main__":
    main()
