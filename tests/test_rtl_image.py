"""The host-side compiler of the RTL engine's program image (fpgacspd.rtl.image, docs/rtl.md)."""

from __future__ import annotations

import re

import pytest
from fpgacsp.problems import sudoku_program
from fpgacsp_proto.encoding import encode_program
from fpgacsp_proto.isa import MAX_COEFF, MAX_RHS, AllDiff, Linear, LinearOp, Neq, Table2, make_program
from fpgacspd.rtl import SUDOKU9, SUDOKU9_CROSSBAR, TEST_SMALL, EngineParams, ImageError, compile_program, image_words
from fpgacspd.rtl.image import IMAGE_VERSION


def record(image: list[int], params: EngineParams, c: int) -> list[int]:
    base = (c + 1) * params.record_stride
    return image[base : base + params.record_words]


def test_the_image_is_the_same_from_the_program_and_from_its_canonical_encoding() -> None:
    program = sudoku_program(3)
    assert compile_program(program, SUDOKU9) == compile_program(encode_program(program), SUDOKU9)


def test_the_header_and_every_field_sit_where_docs_rtl_md_says() -> None:
    p = TEST_SMALL
    program = make_program(
        6,
        5,
        [
            AllDiff((0, 1, 2, 3, 4), exact=True),
            Neq(5, 2, -MAX_COEFF),
            Table2(1, 4, (0b00001, 0b10000, 0, 0b11111, 0b00110)),
            Linear((3, -MAX_COEFF), (4, 0), LinearOp.EQ, -MAX_RHS),
        ],
    )
    image = compile_program(program, p)
    assert image[:4] == [6, 5, 4, IMAGE_VERSION]
    assert len(image) == 5 * p.record_stride and p.record_stride & (p.record_stride - 1) == 0
    alldiff, neq, table, linear = (record(image, p, c) for c in range(4))
    assert alldiff[0] == 1 | 1 << 8 | 5 << 16 and alldiff[4:9] == [0, 1, 2, 3, 4]
    assert neq[0] == 2 | 2 << 16 and neq[1] == (-MAX_COEFF) & 0xFFFFFFFF and neq[4:6] == [5, 2]
    rows = table[4 + 2 * p.max_scope :]
    assert rows[0:2] == [0b00001, 0] and rows[2:4] == [0b10000, 0] and rows[10:] == [0] * (len(rows) - 10)
    assert linear[0] == 4 | 1 << 8 | 2 << 16
    assert linear[2] | linear[3] << 32 == (-MAX_RHS) & (1 << 64) - 1
    assert linear[4 + p.max_scope : 6 + p.max_scope] == [3, (-MAX_COEFF) & 0xFFFFFFFF]
    assert len(image) <= image_words(p)


def test_a_wide_table_row_is_split_over_two_words() -> None:
    p = EngineParams(num_vars=2, domain_width=64, constraints=1, lanes=1, max_scope=2)
    row = (1 << 63) | 1
    image = compile_program(make_program(2, 64, [Table2(0, 1, (row,) * 64)]), p)
    rows = record(image, p, 0)[4 + 2 * p.max_scope :]
    assert rows[:2] == [1, 1 << 31]


@pytest.mark.parametrize(
    ("program", "message"),
    [
        (make_program(11, 4, []), "num_vars = 11 exceeds the engine's 10 (NV)"),
        (make_program(2, 9, []), "domain_size = 9 exceeds the engine's 8 (DW)"),
        (make_program(2, 2, [Neq(0, 1)] * 9), "len(constraints) = 9 exceeds the engine's 8 (NC)"),
        (make_program(8, 8, [AllDiff(tuple(range(6)))]), "constraints[0] (ALLDIFF): scope length = 6 exceeds"),
    ],
)
def test_a_program_that_does_not_fit_is_refused_naming_the_field_and_the_limit(program: object, message: str) -> None:
    with pytest.raises(ImageError, match=re.escape(message)):
        compile_program(program, TEST_SMALL)  # type: ignore[arg-type]


def test_a_kind_the_engine_is_built_without_is_refused() -> None:
    with pytest.raises(ImageError, match=r"constraints\[0\] \(NEQ\): this engine is built without NEQ units"):
        compile_program(make_program(81, 9, [Neq(0, 1)]), SUDOKU9)


def test_the_capabilities_come_from_the_same_parameters_as_the_verilog() -> None:
    caps, verilog = SUDOKU9.capabilities(), SUDOKU9.verilog_parameters()
    assert caps["CAP_VARS.MAX_VARS"] == verilog["NV"] == 81
    assert caps["CAP_ENGINE.MAX_DOMAIN"] == verilog["DW"] == 9
    assert caps["CAP_ENGINE.LANES"] == verilog["LANES"] == 27
    assert caps["CAP_ENGINE.KINDS"] == verilog["KINDS"] == 1
    assert verilog["FIXED"] == 1 and "FIXED" not in SUDOKU9_CROSSBAR.verilog_parameters()
    assert verilog["SD"] == 81  # the stack holds at most one frame per variable


def test_the_wired_sudoku_engine_has_the_scopes_of_sudoku_program_and_refuses_others() -> None:
    assert SUDOKU9.scopes == tuple(c.scope for c in sudoku_program(3).constraints)
    scopes = SUDOKU9.verilog_parameters()["SCOPES"]
    assert isinstance(scopes, str) and scopes.startswith(f"{27 * 9 * 7}'h")
    value = int(scopes.split("'h")[1], 16)
    assert [value >> ((1 * 9 + p) * 7) & 127 for p in range(9)] == list(SUDOKU9.scopes[1])  # row 1
    other = make_program(81, 9, [AllDiff(tuple(range(1, 10)), exact=True)])
    with pytest.raises(ImageError, match=r"scope \(1, 2, .*\) is not the engine's wired scope \(0, 1, "):
        compile_program(other, SUDOKU9)
    assert compile_program(other, SUDOKU9_CROSSBAR)  # the crossbar engine runs it


def test_engine_params_name_the_bad_field() -> None:
    with pytest.raises(ValueError, match=r"EngineParams.domain_width: expected an integer in \[2, 64\], got 65"):
        EngineParams(num_vars=1, domain_width=65, constraints=1, lanes=1, max_scope=2)
    with pytest.raises(ValueError, match="stack_depth: 3 < num_vars 4 can overflow"):
        EngineParams(num_vars=4, domain_width=4, constraints=1, lanes=1, max_scope=2, stack_depth=3)


def test_the_occurrence_table_is_the_inverse_of_the_wired_scopes() -> None:
    verilog = SUDOKU9.verilog_parameters()
    most, ow = verilog["MO"], SUDOKU9.occurrence_bits
    assert most == 3 and ow == 8  # every cell is in a row, a column and a box; entries 1 + c * 9 + p <= 243
    occ = verilog["OCC"]
    assert isinstance(occ, str) and occ.startswith(f"{81 * 3 * 8}'h")
    table = int(occ.split("'h")[1], 16)
    for v in range(81):
        entries = [table >> ((v * 3 + o) * ow) & 255 for o in range(3)]
        assert [SUDOKU9.scopes[(e - 1) // 9][(e - 1) % 9] for e in entries] == [v, v, v]
    assert "OCC" not in SUDOKU9_CROSSBAR.verilog_parameters()


def test_a_wired_engine_runs_only_programs_with_exactly_its_wired_constraints() -> None:
    params = EngineParams(num_vars=4, domain_width=4, constraints=2, lanes=2, max_scope=2, scopes=((0, 1),))
    assert compile_program(make_program(4, 4, [Neq(0, 1)]), params)
    for constraints in ([Neq(0, 1), Neq(2, 3)], []):
        with pytest.raises(ImageError, match=r"this engine wires exactly 1 scopes"):
            compile_program(make_program(4, 4, constraints), params)
