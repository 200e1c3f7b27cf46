"""Visual Sudoku trained through the fpgacsp solver: the README's main job.

A small CNN reads the handwritten digits of the given cells (scikit-learn's bundled 8x8 digits, split by image so
the test boards use unseen handwriting); :class:`fpgacsp.ConstraintLayer` turns the board's logits into a solved
board through the daemon; the loss on the solved board reaches the CNN through the layer's gradient estimator.
Run ``python -m examples.visual_sudoku --help``; the results are recorded in ``RESULTS.md``.
"""
