"""ISA v1 program validation: every bad program is rejected with a message naming where and what.

The messages are checked word for word because the client shows them to the user and the daemon returns
them as INVALID_ARGUMENT details; both sides must say the same thing.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from fpgacsp_proto.isa import (
    MAX_COEFF,
    MAX_DOMAIN_SIZE,
    MAX_RHS,
    MAX_VARS,
    AllDiff,
    Constraint,
    Kind,
    Linear,
    LinearOp,
    Mode,
    Neq,
    Program,
    ProgramError,
    Status,
    Table2,
    make_program,
)
from hypothesis import given
from strategies import programs

OK = Neq(0, 1)  # a valid constraint placed first, so the bad one is constraints[1]


def rejects(n: int, d: int, bad: Constraint, message: str) -> None:
    """``bad`` at index 1 is rejected with exactly ``message`` (after the 'constraints[1] (KIND): ' prefix)."""
    prefix = f"constraints[1] ({bad.kind.name}): "
    with pytest.raises(ProgramError, match=f"^{re.escape(prefix + message)}$"):
        make_program(n, d, [OK, bad])


def test_valid_program_of_every_kind() -> None:
    p = make_program(
        3,
        3,
        [
            AllDiff((0, 1, 2), exact=True),
            AllDiff((0, 2)),
            Neq(0, 1, -2),
            Table2(1, 2, (0b111, 0b000, 0b101)),
            Linear((1, -2), (0, 2), LinearOp.EQ, 0),
        ],
    )
    assert [c.kind for c in p.constraints] == [Kind.ALLDIFF, Kind.ALLDIFF, Kind.NEQ, Kind.TABLE2, Kind.LINEAR]
    assert p.full_mask == 0b111
    assert p.validate() is p


def test_make_program_normalises_field_types() -> None:
    """Lists and numpy integers become tuples and ints, so equal programs compare (and hash) equal."""
    a = make_program(
        np.int64(2),  # type: ignore[arg-type]
        np.int32(2),  # type: ignore[arg-type]
        [
            AllDiff([np.int64(0), 1]),  # type: ignore[arg-type]
            Linear([np.int8(1)], [np.uint16(1)], 1, np.int64(1)),  # type: ignore[arg-type]
            Table2(0, 1, [1, np.uint64(2)]),  # type: ignore[arg-type]
        ],
    )
    b = make_program(2, 2, [AllDiff((0, 1)), Linear((1,), (1,), LinearOp.EQ, 1), Table2(0, 1, (1, 2))])
    assert a == b
    assert hash(a) == hash(b)
    assert all(type(v) is int for c in a.constraints for v in c.scope)
    linear = a.constraints[1]
    assert isinstance(linear, Linear) and linear.op is LinearOp.EQ


@given(programs())
def test_generated_programs_are_valid(p: Program) -> None:
    assert make_program(p.num_vars, p.domain_size, p.constraints) == p


def test_table2_from_matrix() -> None:
    m = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=bool)
    t = Table2.from_matrix(0, 1, m)
    assert t.rows == (0b101, 0b000, 0b010)
    assert t.columns(3) == (0b001, 0b100, 0b001)
    with pytest.raises(
        ProgramError, match=re.escape("TABLE2 matrix: expected a square D x D matrix, got shape (2, 3)")
    ):
        Table2.from_matrix(0, 1, np.ones((2, 3), dtype=bool))


@pytest.mark.parametrize("d", [0, -1, MAX_DOMAIN_SIZE + 1, 100])
def test_domain_size_out_of_range(d: int) -> None:
    with pytest.raises(ProgramError, match=f"^domain_size: must be in \\[1, 64\\], got {d}$"):
        make_program(2, d, [])


@pytest.mark.parametrize("n", [0, -3, MAX_VARS + 1])
def test_num_vars_out_of_range(n: int) -> None:
    with pytest.raises(ProgramError, match=f"^num_vars: must be in \\[1, {MAX_VARS}\\], got {n}$"):
        make_program(n, 2, [])


def test_domain_size_bounds_are_inclusive() -> None:
    assert make_program(1, 1, []).full_mask == 1
    assert make_program(1, 64, []).full_mask == (1 << 64) - 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (AllDiff((0, 3)), "vars[1] = 3 is out of range [0, 3)"),
        (AllDiff((-1, 0)), "vars[0] = -1 is out of range [0, 3)"),
        (Linear((1, 1), (0, 7), LinearOp.LE, 0), "vars[1] = 7 is out of range [0, 3)"),
        (Neq(3, 0), "x = 3 is out of range [0, 3)"),
        (Neq(0, -1), "y = -1 is out of range [0, 3)"),
        (Table2(0, 5, (0, 0, 0)), "y = 5 is out of range [0, 3)"),
    ],
)
def test_index_out_of_range(bad: Constraint, message: str) -> None:
    rejects(3, 3, bad, message)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (AllDiff(()), "vars is empty"),
        (AllDiff((), exact=True), "vars is empty"),
        (Linear((), (), LinearOp.EQ, 0), "vars is empty"),
    ],
)
def test_empty_scope(bad: Constraint, message: str) -> None:
    rejects(3, 3, bad, message)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (AllDiff((0, 1, 0)), "vars[2] = 0 is a duplicate variable in the scope"),
        (Linear((1, 2), (2, 2), LinearOp.LE, 3), "vars[1] = 2 is a duplicate variable in the scope"),
        (Neq(1, 1), "x and y are the same variable 1"),
        (Table2(2, 2, (0, 0, 0)), "x and y are the same variable 2"),
    ],
)
def test_repeated_variable(bad: Constraint, message: str) -> None:
    rejects(3, 3, bad, message)


def test_exact_alldiff_arity() -> None:
    rejects(
        3,
        3,
        AllDiff((0, 1), exact=True),
        "exact requires as many variables as values, got 2 variables for domain_size 3",
    )
    rejects(
        4,
        3,
        AllDiff((0, 1, 2, 3), exact=True),
        "exact requires as many variables as values, got 4 variables for domain_size 3",
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ((0, 0), "matrix must be 3 x 3, got 2 rows"),
        ((0, 0, 0, 0), "matrix must be 3 x 3, got 4 rows"),
        ((0, 0b1000, 0), "matrix row 1 has bits at or above domain_size 3"),
        ((0, 0, -1), "matrix row 2 has bits at or above domain_size 3"),
    ],
)
def test_table2_matrix(rows: tuple[int, ...], message: str) -> None:
    rejects(3, 3, Table2(0, 1, rows), message)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Linear((1, 0), (0, 1), LinearOp.LE, 1), f"coeffs[1] = 0 must be nonzero and within +-{MAX_COEFF}"),
        (
            Linear((MAX_COEFF + 1,), (0,), LinearOp.LE, 1),
            f"coeffs[0] = {MAX_COEFF + 1} must be nonzero and within +-{MAX_COEFF}",
        ),
        (Linear((1,), (0, 1), LinearOp.EQ, 1), "coeffs has 1 entries but vars has 2"),
        (Linear((1, 2, 3), (0, 1), LinearOp.EQ, 1), "coeffs has 3 entries but vars has 2"),
        (Linear((1,), (0,), LinearOp.LE, MAX_RHS + 1), f"rhs = {MAX_RHS + 1} is out of range +-2^62"),
        (Linear((1,), (0,), LinearOp.LE, -MAX_RHS - 1), f"rhs = {-MAX_RHS - 1} is out of range +-2^62"),
        (Neq(0, 1, MAX_COEFF + 1), f"k = {MAX_COEFF + 1} is out of range [{-MAX_COEFF}, {MAX_COEFF}]"),
    ],
)
def test_linear_and_neq_parameters(bad: Constraint, message: str) -> None:
    rejects(3, 3, bad, message)


def test_parameter_extremes_are_valid() -> None:
    make_program(2, 64, [Neq(0, 1, MAX_COEFF), Neq(0, 1, -MAX_COEFF)])
    make_program(2, 64, [Linear((MAX_COEFF, -MAX_COEFF), (0, 1), LinearOp.LE, MAX_RHS)])
    make_program(2, 64, [Linear((1,), (0,), LinearOp.EQ, -MAX_RHS)])


def test_bad_linear_op_on_a_hand_built_program() -> None:
    p = Program(2, 2, (Linear((1,), (0,), 7, 0),))  # type: ignore[arg-type]
    with pytest.raises(ProgramError, match=r"^constraints\[0\] \(LINEAR\): op must be LE or EQ, got 7$"):
        p.validate()


def test_unknown_constraint_type() -> None:
    with pytest.raises(ProgramError, match=r"^constraints\[0\]: unknown constraint type str$"):
        Program(2, 2, ("alldiff",)).validate()  # type: ignore[arg-type]
    with pytest.raises(ProgramError, match=r"^constraints\[0\] \(str\): unknown constraint type str$"):
        make_program(2, 2, ["alldiff"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((2, 2, [Linear((1,), (0,), 7, 0)]), r"^constraints\[0\] \(LINEAR\): op: must be LE \(0\) or EQ \(1\), got 7$"),  # type: ignore[arg-type]
        ((2.5, 2, []), r"^num_vars: must be an integer, got 2\.5$"),
        ((2, True, []), r"^domain_size: must be an integer, got True$"),
        ((2, 2, [AllDiff(None)]), r"^constraints\[0\] \(ALLDIFF\): vars: must be a sequence of integers, got None$"),  # type: ignore[arg-type]
        ((3, 3, [Neq(0, "a")]), r"^constraints\[0\] \(NEQ\): y: must be an integer, got 'a'$"),  # type: ignore[arg-type]
        ((3, 3, [OK, AllDiff((0, 1.5))]), r"^constraints\[1\] \(ALLDIFF\): vars\[1\]: must be an integer, got 1\.5$"),  # type: ignore[arg-type]
    ],
)
def test_make_program_rejects_wrong_field_types(args: tuple, message: str) -> None:
    """make_program coerces numpy ints but never truncates floats or guesses at strings."""
    with pytest.raises(ProgramError, match=message):
        make_program(*args)


def test_first_problem_is_reported() -> None:
    """Validation stops at the first bad constraint, so the index in the message is the lowest one."""
    with pytest.raises(ProgramError, match=r"^constraints\[2\] \(NEQ\): "):
        make_program(3, 3, [OK, OK, Neq(0, 0), AllDiff(())])


def test_enum_values_are_the_wire_values() -> None:
    """These numbers travel on the wire and in device completions: changing one is a protocol break."""
    assert {s.name: int(s) for s in Status} == {"SOLVED": 1, "FIXPOINT": 2, "CONFLICT": 3, "UNSAT": 4, "LIMIT": 5}
    assert {m.name: int(m) for m in Mode} == {"PROPAGATE": 1, "SOLVE": 2}
    assert {o.name: int(o) for o in LinearOp} == {"LE": 0, "EQ": 1}
    assert {k.name: int(k) for k in Kind} == {"ALLDIFF": 1, "NEQ": 2, "TABLE2": 3, "LINEAR": 4}
