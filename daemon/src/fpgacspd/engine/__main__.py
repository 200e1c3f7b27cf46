"""``python -m fpgacspd.engine``: compile the fast core's kernel into numba's disk cache (``make venv`` runs it)."""

import sys

from .precompile import main

sys.exit(main())
