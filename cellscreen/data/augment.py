"""Random augmentation on uint8 image tensors, after the cache.

The seed studies multiplied their training sets with 90/270-degree rotations
and flips; cellscreen draws those on the fly instead, from the full dihedral
group of the square (a cell has no "up"), plus colour jitter for stain and
lamp differences between labs.  Everything here works on ``(C, H, W)`` or
``(N, C, H, W)`` tensors, so nothing random is ever cached.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

__all__ = ["RandomDihedral", "train_augmentation", "dihedral_views"]


class RandomDihedral(torch.nn.Module):
    """Rotate by a random multiple of 90 degrees, then maybe mirror.

    Each of the 8 symmetries of the square is equally likely; rotations by
    90 degrees are exact (no interpolation) for square images.
    """

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(4, ()))
        image = torch.rot90(image, k, dims=(-2, -1))
        if torch.rand(()) < 0.5:
            image = torch.flip(image, dims=(-1,))
        return image


def dihedral_views(image: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations/flips of an image (for test-time augmentation)."""
    views = [torch.rot90(image, k, dims=(-2, -1)) for k in range(4)]
    return views + [torch.flip(v, dims=(-1,)) for v in views]


def train_augmentation(*, rotate_flip: bool = True, color_jitter: float = 0.1) -> v2.Compose:
    """The default training augmentation: dihedral symmetries and colour jitter."""
    steps: list[torch.nn.Module] = []
    if rotate_flip:
        steps.append(RandomDihedral())
    if color_jitter > 0:
        steps.append(
            v2.ColorJitter(
                brightness=color_jitter, contrast=color_jitter, saturation=color_jitter, hue=color_jitter / 4
            )
        )
    return v2.Compose(steps)
