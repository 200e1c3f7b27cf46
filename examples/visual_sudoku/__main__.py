"""``python -m examples.visual_sudoku``: see :mod:`.cli`."""

import sys

from .cli import main

sys.exit(main())
