"""Limits that the client and the daemon must agree on, defined once here (the wire package both depend on).

A limit written twice drifts: the client once allowed 64 MiB messages while the daemon allowed 128 MiB, so a
large batch the daemon would have answered failed in the client's own gRPC layer. Everything here is a property
of the wire contract, not an operator's setting: the daemon's configurable ceilings (``registry.max_vars``,
``solve.max_node_limit``, ...) stay in its config and are enforced there.
"""

from __future__ import annotations

# node_limit and max_solutions are int64 in the engine's kernels and in the device's job descriptors, so the
# largest value either accepts is the largest int64; anything above is INVALID_ARGUMENT on both sides.
MAX_LIMIT = (1 << 63) - 1

# The node limit of a Solve that names none (node_limit = 0 on the wire): the daemon's solve.default_node_limit
# default and the "local" target's fixed value, so a call means the same search on every target.
DEFAULT_NODE_LIMIT = 1_000_000

# The largest gRPC message either side sends or receives. A batch_size = 65536 request of 9x9 Sudoku with
# priorities is about 58 MB (uint8[B, 81, 9] priorities plus u16 domains); 128 MiB leaves room for twice that.
# Client and daemon must use the same value: a client limit below the daemon's refuses requests the daemon
# would serve, and a reply the daemon may send but the client may not receive is work done for nothing.
MAX_MESSAGE_BYTES = 128 << 20
