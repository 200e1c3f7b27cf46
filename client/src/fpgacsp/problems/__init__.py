"""Problem builders and loaders: ISA v1 programs and domains for the benchmark families.

Each module builds one family's program (variables, domain size, constraints in a documented order),
turns instances into ``uint64[B, N]`` domains, reads the family's file format and checks solutions, so
tests, benchmarks and examples share one definition of every problem.
"""

from .addition import addition_domains, addition_program, addition_values, addition_vars
from .coloring import Graph, check_coloring, coloring_program, load_dimacs
from .generate import SudokuBoards, count_solutions, generate_sudoku, random_sudoku_solution
from .killer import Cage, killer_program
from .qcp import QcpInstance, check_latin_square, load_qcp, qcp_domains, qcp_program
from .queens import check_queens_solution, queens_program
from .sudoku import (
    PuzzleFileError,
    PuzzleRecord,
    check_sudoku_solution,
    format_sudoku,
    load_puzzle_file,
    parse_sudoku,
    sudoku_domains,
    sudoku_program,
    sudoku_units,
)

__all__ = [
    "Cage",
    "Graph",
    "PuzzleFileError",
    "PuzzleRecord",
    "QcpInstance",
    "SudokuBoards",
    "addition_domains",
    "addition_program",
    "addition_values",
    "addition_vars",
    "check_coloring",
    "check_latin_square",
    "check_queens_solution",
    "check_sudoku_solution",
    "coloring_program",
    "count_solutions",
    "format_sudoku",
    "generate_sudoku",
    "killer_program",
    "load_dimacs",
    "load_puzzle_file",
    "load_qcp",
    "parse_sudoku",
    "qcp_domains",
    "qcp_program",
    "queens_program",
    "random_sudoku_solution",
    "sudoku_domains",
    "sudoku_program",
    "sudoku_units",
]
