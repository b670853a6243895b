"""Cell supervision: a training-only probe that teaches the vision tower what is in each grid cell.

Learning from captions alone, a tiny vision tower trained from scratch picks up colours, sizes
and places within a few thousand steps, but shapes much later: the only signal for them is a
shape word's loss, several layers away. With the shapes VLM's geometry (renders whose merged
vision tokens form a 3x3 grid, one token per grid cell of the world), each image token can be
supervised directly: a linear probe on the merged token predicts the cell's shape (or empty),
colour and size, and its loss is added to the language-modelling loss. The probe is not part of
the exported model; it only shapes the vision features the language model reads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kit.world.scene import COLOURS, GRID, SHAPES, SIZES, Scene

IGNORE = -100


def cell_labels(scene: Scene) -> tuple[Tensor, Tensor, Tensor]:
    """Per cell in reading order: shape (0 = empty, 1.. = SHAPES), colour and size (IGNORE where empty)."""
    shape = torch.zeros(GRID * GRID, dtype=torch.long)
    colour = torch.full((GRID * GRID,), IGNORE, dtype=torch.long)
    size = torch.full((GRID * GRID,), IGNORE, dtype=torch.long)
    colours, shapes = list(COLOURS), list(SHAPES)
    for o in scene.objects:
        k = o.row * GRID + o.col
        shape[k] = 1 + shapes.index(o.shape)
        colour[k] = colours.index(o.colour)
        size[k] = SIZES.index(o.size)
    return shape, colour, size


class CellProbe(nn.Module):
    """Linear read-outs of shape-or-empty, colour and size from each merged vision token.

    Args:
        width: the merged tokens' width (the language model's hidden size).
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.shape = nn.Linear(width, len(SHAPES) + 1)
        self.colour = nn.Linear(width, len(COLOURS))
        self.size = nn.Linear(width, len(SIZES))

    def forward(self, tokens: Tensor, scenes: list[Scene]) -> tuple[Tensor, dict[str, Tensor]]:
        """tokens `(I * 9, W)` (I images, 3x3 merged tokens each, row-major) -> loss and accuracies."""
        labels = [cell_labels(s) for s in scenes]
        targets = [torch.cat([lab[i] for lab in labels]).to(tokens.device) for i in range(3)]  # (I * 9,) each
        loss = tokens.new_zeros(())
        accuracy = {}
        for name, head, target in zip(("shape", "colour", "size"), (self.shape, self.colour, self.size), targets):
            logits = head(tokens.float())  # (I * 9, classes)
            loss = loss + nn.functional.cross_entropy(logits, target, ignore_index=IGNORE)
            keep = target != IGNORE
            accuracy[name] = (logits.argmax(-1)[keep] == target[keep]).float().mean()
        return loss, accuracy
