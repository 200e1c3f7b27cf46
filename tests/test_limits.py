"""The limits client and daemon must agree on are written once (fpgacsp_proto.limits, fpgacsp_proto.isa) and every
side uses those values: a second copy is how the client came to refuse 64-128 MiB messages the daemon served.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import fpgacsp
import fpgacsp._channel
import fpgacsp._codec
import fpgacsp._local
import fpgacsp_proto.isa
import pytest
from fpgacsp.cli import build_parser as client_parser
from fpgacsp_proto import limits
from fpgacsp_proto.isa import MAX_CONSTRAINTS, MAX_VARS
from fpgacspd import engine
from fpgacspd.config import SETTINGS, ConfigError, SolveConfig, load_config
from fpgacspd.engine import reference
from fpgacspd.server import SERVER_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "proto/src", ROOT / "client/src", ROOT / "daemon/src"]
# Where each shared limit is defined, and the only place it may be assigned a value.
HOMES = {
    "MAX_LIMIT": ROOT / "proto/src/fpgacsp_proto/limits.py",
    "DEFAULT_NODE_LIMIT": ROOT / "proto/src/fpgacsp_proto/limits.py",
    "MAX_MESSAGE_BYTES": ROOT / "proto/src/fpgacsp_proto/limits.py",
    "MAX_VARS": ROOT / "proto/src/fpgacsp_proto/isa.py",
    "MAX_CONSTRAINTS": ROOT / "proto/src/fpgacsp_proto/isa.py",
    "MAX_DOMAIN_SIZE": ROOT / "proto/src/fpgacsp_proto/isa.py",
}
# The values written out: a literal spelling of one of them outside its home is a copy that can drift.
# (1_000_000 is left out: it is also the ns -> ms divisor; the assignment check covers DEFAULT_NODE_LIMIT.)
LITERALS = {"(1 << 63) - 1", "2 ** 63 - 1", "128 << 20", "64 << 20", "1 << 20", "1 << 22"}
MESSAGE_KEYS = ("grpc.max_receive_message_length", "grpc.max_send_message_length")


def _python_files() -> list[Path]:
    return sorted(p for src in SOURCES for p in src.rglob("*.py") if not p.name.endswith(("_pb2.py", "_pb2_grpc.py")))


def test_each_shared_limit_is_assigned_only_in_its_home() -> None:
    # Module-level names only: a class attribute of that name is another quantity (the device's CAP_VARS.MAX_VARS
    # register field, read from the card), not a copy of the ISA's bound.
    found: dict[str, list[Path]] = {name: [] for name in HOMES}
    for path in _python_files():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []  # fmt: skip
            for t in targets:
                if isinstance(t, ast.Name) and t.id in found:
                    found[t.id].append(path)
    assert found == {name: [home] for name, home in HOMES.items()}


def test_no_copy_of_a_shared_value_is_spelled_out() -> None:
    homes = set(HOMES.values())
    copies = []
    for path in _python_files():
        if path in homes:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.BinOp | ast.Constant) and ast.unparse(node) in LITERALS:
                copies.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    # A device model's own sizes (an RTL parameter range) may coincide with these; none do today, and a new one
    # should import the ISA's name or be listed here with why it is a different quantity.
    allowed = {"daemon/src/fpgacspd/rtl/params.py"}
    assert [c for c in copies if c.split(":")[0] not in allowed] == []


def test_client_and_daemon_carry_the_same_message_limits() -> None:
    server = dict(SERVER_OPTIONS)
    for fleet in (False, True):  # a fleet channel has another service config, not other message limits
        client = dict(fpgacsp._channel.channel_options("test", fleet=fleet))
        for key in MESSAGE_KEYS:
            assert client[key] == server[key] == limits.MAX_MESSAGE_BYTES
    # one value, large enough for a B = 65536 batch of 9x9 Sudoku with priorities (~58 MB)
    assert limits.MAX_MESSAGE_BYTES == 128 << 20 > 65536 * 81 * (9 + 8)
    # an override still wins, so a user may lower it (or raise it towards a daemon configured above it)
    assert dict(fpgacsp._channel.channel_options("t", {"max_send_message_length": 1}))[MESSAGE_KEYS[1]] == 1


def test_every_default_node_limit_is_the_same() -> None:
    local_default = inspect.signature(fpgacsp._local.LocalSolver.solve).parameters["node_limit"].default
    cli_default = client_parser().parse_args(["solve", "x.txt"]).node_limit
    daemon_default = load_config([], env={}).solve.default_node_limit
    defaults = {
        "client local": local_default,
        "client cli": cli_default,
        "daemon config": daemon_default,
        "daemon SolveConfig": SolveConfig().default_node_limit,
        "engine SolveOptions": engine.SolveOptions().node_limit,
        "engine DEFAULT_OPTIONS": engine.DEFAULT_OPTIONS.node_limit,
        "engine DEFAULT_NODE_LIMIT": engine.DEFAULT_NODE_LIMIT,
    }
    assert defaults == dict.fromkeys(defaults, limits.DEFAULT_NODE_LIMIT)
    assert limits.DEFAULT_NODE_LIMIT == 1_000_000
    assert fpgacsp._local.DEFAULT_NODE_LIMIT is engine.DEFAULT_NODE_LIMIT is limits.DEFAULT_NODE_LIMIT


def test_the_int64_bound_is_one_object_everywhere() -> None:
    assert fpgacsp._codec.MAX_LIMIT is reference.MAX_LIMIT is limits.MAX_LIMIT == (1 << 63) - 1
    with pytest.raises(fpgacsp.InvalidArgumentError, match=r"max_solutions: must be an integer in \[1, 2\^63 - 1\]"):
        fpgacsp._codec.check_limit("max_solutions", limits.MAX_LIMIT + 1)
    with pytest.raises(ValueError, match=r"max_solutions: must be an integer in \[1, 2\^63 - 1\]"):
        engine.SolveOptions(max_solutions=limits.MAX_LIMIT + 1)
    assert engine.SolveOptions(max_solutions=limits.MAX_LIMIT).max_solutions == limits.MAX_LIMIT


@pytest.mark.parametrize(("key", "ceiling"), [("max_vars", MAX_VARS), ("max_constraints", MAX_CONSTRAINTS)])
def test_the_daemon_registry_ceilings_are_the_isas(key: str, ceiling: int) -> None:
    (setting,) = [s for s in SETTINGS if (s.section, s.key) == ("registry", key)]
    assert setting.maximum == ceiling == getattr(fpgacsp_proto.isa, key.upper())
    # the ISA's bound is accepted, one above it is refused naming the setting: a registry cannot promise more
    # than any program may hold
    assert getattr(load_config([f"--{key.replace('_', '-')}", str(ceiling)], env={}).registry, key) == ceiling
    with pytest.raises(ConfigError, match=rf"--{key.replace('_', '-')}.*at most {ceiling}"):
        load_config([f"--{key.replace('_', '-')}", str(ceiling + 1)], env={})
