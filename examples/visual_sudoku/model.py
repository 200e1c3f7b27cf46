"""The digit reader: a small CNN from one 8x8 image to 9 logits (digits 1..9, the solver's values 0..8), or to
``classes`` logits (digit addition reads 0..9 with the same network)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .digits import NUM_DIGITS


class DigitCNN(nn.Module):
    """Two 3x3 convolutions, one 2x2 pooling, two linear layers: about 90k parameters.

    Small on purpose: 8x8 images carry little detail, and the whole job trains on 2 CPU cores in minutes. Dropout
    before the classifier matters more than depth here, with about 90 training images per digit.
    """

    def __init__(self, width: int = 32, hidden: int = 128, dropout: float = 0.25, classes: int = NUM_DIGITS) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * width * 4 * 4, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        """``float[M, 1, 8, 8]`` to logits ``float[M, classes]``."""
        return self.classifier(self.features(images))


def augment(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Shift each image by up to one pixel (zero fill): cheap handwriting variety for a tiny training set."""
    padded = nn.functional.pad(images, (1, 1, 1, 1))
    out = torch.empty_like(images)
    shifts = torch.randint(0, 3, (len(images), 2), generator=generator)
    for dy in range(3):
        for dx in range(3):
            sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            out[sel] = padded[sel, :, dy : dy + 8, dx : dx + 8]
    return out
