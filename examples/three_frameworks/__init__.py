"""The same 4x4 visual Sudoku trained through the solver layer in PyTorch, JAX and TensorFlow (see ``train``)."""
