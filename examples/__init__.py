"""Example jobs built on fpgacsp (``python -m examples.visual_sudoku``)."""
