"""fpgacspd: the fpgacsp accelerator daemon."""

__version__ = "0.1.0"
