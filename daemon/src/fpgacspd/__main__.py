"""``fpgacspd`` / ``python -m fpgacspd``: parse the configuration, serve, and return the exit status.

Exit status: 0 after a SIGTERM/SIGINT drain (also one a second signal cut short), 1 when startup failed (an
address or port that cannot be bound) or, a bug, a request went without its one answer; 2 for a
configuration error (argparse's own convention for bad flags).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from .config import ConfigError, load_config
from .logs import configure_logging
from .server import serve


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as e:
        print(f"fpgacspd: configuration error: {e}", file=sys.stderr)
        return 2
    configure_logging(config.log.format, config.log.level)
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
