"""Generated protobuf stubs: present, not stale, and agreeing with the Python ISA on every shared number.

The stubs in proto/src/fpgacsp_proto/v1 are build outputs of ``make proto`` (never committed). This test
regenerates them into a temporary folder with the same protoc invocation and compares bytes, so a .proto
edited without rerunning ``make proto`` fails here rather than as a confusing wire mismatch later.
"""

from __future__ import annotations

import enum
import subprocess
import sys
from pathlib import Path

import pytest
from fpgacsp_proto.isa import Kind, LinearOp, Mode, Status

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_SRC = REPO_ROOT / "proto" / "src"
V1 = PROTO_SRC / "fpgacsp_proto" / "v1"
STUB_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
PROTOS = sorted(V1.glob("*.proto"))


def regenerate(proto: Path, out: Path) -> None:
    """The Makefile's command for one .proto, with the output redirected to ``out``."""
    rel = proto.relative_to(PROTO_SRC)
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", "-I", str(PROTO_SRC),
        f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", str(rel),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"protoc failed on {rel}:\n{done.stderr}"


def test_there_are_protos() -> None:
    assert PROTOS, f"no .proto files in {V1}"


@pytest.mark.parametrize("proto", PROTOS, ids=[p.name for p in PROTOS])
def test_stubs_are_up_to_date(proto: Path, tmp_path: Path) -> None:
    regenerate(proto, tmp_path)
    rel_dir = proto.parent.relative_to(PROTO_SRC)
    for suffix in STUB_SUFFIXES:
        name = proto.stem + suffix
        fresh = tmp_path / rel_dir / name
        in_tree = proto.parent / name
        assert fresh.is_file(), f"protoc did not produce {name}"
        assert in_tree.is_file(), f"{in_tree.relative_to(REPO_ROOT)} is missing: run make proto"
        assert in_tree.read_bytes() == fresh.read_bytes(), f"{in_tree.relative_to(REPO_ROOT)} is stale: run make proto"


def test_no_orphan_stubs() -> None:
    """A stub whose .proto was deleted or renamed would still import; it must go too."""
    stems = {p.stem for p in PROTOS}
    for suffix in STUB_SUFFIXES:
        for stub in V1.glob("*" + suffix):
            stem = stub.name.removesuffix(suffix)
            assert stem in stems, f"{stub.relative_to(REPO_ROOT)} has no {stem}.proto: delete it and run make proto"


def wire_values(pb_enum: object, prefix: str) -> dict[str, int]:
    """Protobuf enum values without the UNSPECIFIED zero, keyed by the Python-side member name."""
    items = pb_enum.items()  # type: ignore[attr-defined]
    return {name.removeprefix(prefix): value for name, value in items if not name.endswith("_UNSPECIFIED")}


@pytest.mark.parametrize(
    ("py_enum", "pb_name", "prefix"),
    [(Status, "Status", "STATUS_"), (Mode, "Mode", "MODE_"), (LinearOp, "LinearOp", "LINEAR_OP_")],
)
def test_enums_match_the_python_isa(py_enum: type[enum.IntEnum], pb_name: str, prefix: str) -> None:
    from fpgacsp_proto.v1 import isa_pb2

    assert wire_values(getattr(isa_pb2, pb_name), prefix) == {m.name: int(m) for m in py_enum}


def test_named_enum_constants() -> None:
    from fpgacsp_proto.v1 import isa_pb2

    assert isa_pb2.STATUS_SOLVED == Status.SOLVED
    assert isa_pb2.STATUS_FIXPOINT == Status.FIXPOINT
    assert isa_pb2.STATUS_CONFLICT == Status.CONFLICT
    assert isa_pb2.STATUS_UNSAT == Status.UNSAT
    assert isa_pb2.STATUS_LIMIT == Status.LIMIT
    assert isa_pb2.MODE_PROPAGATE == Mode.PROPAGATE
    assert isa_pb2.MODE_SOLVE == Mode.SOLVE
    assert isa_pb2.LINEAR_OP_LE == LinearOp.LE
    assert isa_pb2.LINEAR_OP_EQ == LinearOp.EQ
    assert isa_pb2.STATUS_UNSPECIFIED == isa_pb2.MODE_UNSPECIFIED == 0


def test_constraint_oneof_numbers_are_the_kinds() -> None:
    """The oneof field numbers of Constraint equal the ISA kind codes used by the canonical encoding."""
    from fpgacsp_proto.v1 import isa_pb2

    fields = isa_pb2.Constraint.DESCRIPTOR.oneofs_by_name["kind"].fields
    assert {f.name.upper(): f.number for f in fields} == {k.name: int(k) for k in Kind}
