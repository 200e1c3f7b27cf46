"""Digit addition (MNIST-addition style): a CNN learns to read digits from the sums of N-digit numbers alone,
through the solver's LINEAR constraints. ``python -m examples.digit_addition --help``."""
