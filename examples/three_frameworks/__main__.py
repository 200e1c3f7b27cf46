"""``python -m examples.three_frameworks``: see :mod:`.train`."""

import sys

from .train import main

sys.exit(main())
