"""How the client is put together: imports that go one way, limits shared with the daemon, and a ``local`` target
made of the daemon's own registry and self-test rather than copies of them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import fpgacsp
import fpgacsp._channel
import fpgacsp._codec
import numpy as np
import pytest
from fpgacsp import Neq, connect, make_program, sudoku_program
from fpgacsp._local import LocalSolver
from fpgacsp_proto import limits
from fpgacspd.config import RegistryConfig, SolveConfig
from fpgacspd.engine import DEFAULT_NODE_LIMIT as ENGINE_DEFAULT_NODE_LIMIT
from fpgacspd.engine import SolveOptions
from fpgacspd.selftest import known_answers
from fpgacspd.server import SERVER_OPTIONS

PACKAGE = Path(fpgacsp.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def _runtime_imports(module: str) -> tuple[set[str], set[str]]:
    """The sibling modules ``module`` imports (at any depth of its code, TYPE_CHECKING blocks aside), and the
    other top-level packages it imports."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    siblings: set[str] = set()
    packages: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            siblings |= {n.split(".")[0] for n in names if n.split(".")[0] in MODULES}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            packages.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            packages |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "importlib.import_module":
            packages.add("<dynamic>")
    return siblings, packages


def test_the_client_modules_import_one_way() -> None:
    graph = {m: _runtime_imports(m)[0] for m in MODULES}
    assert {"_client", "_local_client", "_async_client", "_flow", "_base"} <= set(graph)
    state = dict.fromkeys(graph, 0)  # 0 unseen, 1 on the path, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for dep in sorted(graph[m]):
            assert state[dep] != 1, f"import cycle: {' -> '.join([*path, m, dep])}"
            if state[dep] == 0:
                visit(dep, [*path, m])
        state[m] = 2

    for m in MODULES:
        if state[m] == 0:
            visit(m, [])
    assert not graph["_local_client"] & {"_client", "_async_client"}  # the local target sits below connect()
    assert not graph["_flow"] & {"_client", "_async_client", "_channel"}  # the flow knows no channel


def test_only_local_imports_the_daemon() -> None:
    importers = {m for m in MODULES if {"fpgacspd", "<dynamic>"} & _runtime_imports(m)[1]}
    assert importers == {"_local"}
    # and importing the package (and every client module) loads none of it: a host without the extra works
    code = "import sys, fpgacsp, " + ", ".join(f"fpgacsp.{m}" for m in MODULES) + "\n"
    code += "print(sorted(k for k in sys.modules if k.split('.')[0] == 'fpgacspd'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_client_and_daemon_share_their_limits() -> None:
    client = dict(fpgacsp._channel.channel_options("test"))
    server = dict(SERVER_OPTIONS)
    for key in ("grpc.max_receive_message_length", "grpc.max_send_message_length"):
        assert client[key] == server[key] == limits.MAX_MESSAGE_BYTES == 128 << 20
    assert fpgacsp._codec.MAX_LIMIT is limits.MAX_LIMIT == (1 << 63) - 1
    assert SolveConfig().default_node_limit is limits.DEFAULT_NODE_LIMIT
    assert ENGINE_DEFAULT_NODE_LIMIT == limits.DEFAULT_NODE_LIMIT  # the engine's own default: the same search
    # the same bound, on both sides of the wire
    with pytest.raises(fpgacsp.InvalidArgumentError, match=r"2\^63 - 1"):
        fpgacsp._codec.check_limit("node_limit", limits.MAX_LIMIT + 1)
    with pytest.raises(ValueError, match=r"2\^63 - 1"):
        SolveOptions(node_limit=limits.MAX_LIMIT + 1)
    assert SolveOptions(node_limit=limits.MAX_LIMIT).node_limit == fpgacsp._codec.check_limit("n", limits.MAX_LIMIT)


def test_local_enforces_the_daemons_registry_limits() -> None:
    too_many = RegistryConfig().max_vars + 1
    wide = make_program(too_many, 2, [Neq(0, 1, 0)])
    with connect("local") as client:
        with pytest.raises(fpgacsp.ProgramLimitError, match=r"registry\.max_vars") as exc:
            client.register(wide)
        assert exc.value.method == "RegisterProgram" and exc.value.code is not None
        # a solve's implicit registration fails the same way, as RegisterProgram would over gRPC
        with pytest.raises(fpgacsp.ProgramLimitError, match=r"registry\.max_vars"):
            client.solve(wide, np.full((1, too_many), 0b11, dtype=np.uint64))
        stats = client.stats()
        assert stats.count("RegisterProgram", "RESOURCE_EXHAUSTED") == 1
        assert stats.count("Solve", "RESOURCE_EXHAUSTED") == 1
        assert client.list_programs() == []


def test_local_evicts_like_the_daemon() -> None:
    cap = RegistryConfig().max_programs
    programs = [make_program(2, 2 + i, [Neq(0, 1, 0)]) if i < 62 else make_program(3 + i, 2, [Neq(0, 1, 0)])
                for i in range(cap + 2)]  # fmt: skip
    with connect("local") as client:
        pinned = client.register(programs[0], pin=True)
        ids = [client.register(p) for p in programs[1:]]
        held = {p.program_id for p in client.list_programs()}
        assert len(held) == cap and pinned in held  # the pinned one survives ...
        assert ids[0] not in held and ids[1] not in held and ids[-1] in held  # ... the least recently used go
        with pytest.raises(fpgacsp.NotFoundError, match="register it again"):
            client.program_info(ids[0])


def test_local_self_test_is_the_daemons_and_catches_a_wrong_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    with connect("local") as client:
        good = client.self_test()
        assert good.passed and [c.name for c in good.cases] == [ka.name for ka in known_answers()]
        assert all(c.detail == "ok" for c in good.cases) and good.duration_us > 0
        real = LocalSolver._run

        def off_by_one(self: LocalSolver, *args: object) -> object:
            res = real(self, *args)  # type: ignore[arg-type]
            res.nodes[:] += 1  # a single miscounted node is a failed known answer
            return res

        monkeypatch.setattr(LocalSolver, "_run", off_by_one)
        bad = client.self_test()
        assert not bad.passed and not any(c.passed for c in bad.cases)
        assert "expected (domains, status, nodes, solutions, sweeps)" in bad.cases[0].detail
        assert client.reset().self_test_passed is False
        monkeypatch.undo()
        assert client.reset().self_test_passed is True
        assert client.solve(sudoku_program(2), np.full((1, 16), 0b1111, dtype=np.uint64)).batch_size == 1
