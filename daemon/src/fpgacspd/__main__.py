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

# Python hands the GIL to a waiting thread after this long (default 5 ms). The daemon's heavy work either
# releases the GIL (the engine, interrupt waits) or is pure Python on a worker thread (decoding a huge
# program); every RPC the event loop answers meanwhile needs the GIL several times, and 1 ms keeps a health
# check or status under 100 ms while a million-constraint program decodes (5 ms: up to 140 ms measured).
GIL_SWITCH_INTERVAL_S = 0.001


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as e:
        print(f"fpgacspd: configuration error: {e}", file=sys.stderr)
        return 2
    configure_logging(config.log.format, config.log.level)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
