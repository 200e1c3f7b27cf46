"""The host side of the RTL engine (``fpga_bitstream/rtl``): its build parameters and its program images.

``EngineParams`` are the engine's elaboration parameters (one source for the Verilog parameters, the testbenches,
the synthesis scripts and the capabilities a card built from them reports); ``compile_program`` turns a program's
canonical encoding into the word image the engine's program memory is loaded with (docs/rtl.md).
"""

from .image import ImageError, compile_program, image_words
from .params import CARD, SUDOKU9, SUDOKU9_CROSSBAR, TEST_SMALL, TEST_WIDE, EngineParams

__all__ = [
    "CARD",
    "SUDOKU9",
    "SUDOKU9_CROSSBAR",
    "TEST_SMALL",
    "TEST_WIDE",
    "EngineParams",
    "ImageError",
    "compile_program",
    "image_words",
]
