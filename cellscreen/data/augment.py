"""Random augmentation on uint8 image tensors, after the cache.

The seed studies multiplied their training sets with 90/270-degree rotations
and flips; cellscreen draws those on the fly instead, from the full dihedral
group of the square (a cell has no "up"), plus brightness/contrast jitter for
stain and lamp differences between labs, drawn independently for every image
of a batch.  Everything here works on tensors after loading, so nothing random
is ever cached.
"""

from __future__ import annotations

import torch

__all__ = ["augment_batch", "dihedral_views"]


def dihedral_views(image: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations/flips of an image (for test-time augmentation)."""
    views = [torch.rot90(image, k, dims=(-2, -1)) for k in range(4)]
    return views + [torch.flip(v, dims=(-1,)) for v in views]


def augment_batch(images: torch.Tensor, *, rotate_flip: bool = True, color_jitter: float = 0.0,
                  stain_jitter: float = 0.0) -> torch.Tensor:
    """Augment a batch ``(N, C, H, W)`` with an independent draw per image.

    Dihedral symmetries are applied to uint8 pixels (exact); colour jitter
    (brightness and contrast factors in ``1 +- color_jitter``, per image) works
    on floats in 0..1 and the result is returned as float.  Without colour or
    stain jitter uint8 pixels stay uint8, so that normalisation can lay them out
    while still one byte per value (``normalise``).  torchvision's
    ColorJitter draws one set of factors per call, hence this batched version.
    Stain jitter imitates slides stained darker, lighter or with another tint:
    a gain in ``1 +- stain_jitter`` per colour channel and a saturation factor
    in ``1 +- stain_jitter``, per image.
    """
    if rotate_flip:
        images = images.clone()
        turns = torch.randint(4, (images.shape[0],))
        for k in range(1, 4):
            chosen = turns == k
            if chosen.any():
                images[chosen] = torch.rot90(images[chosen], k, dims=(-2, -1))
        mirrored = torch.rand(images.shape[0]) < 0.5
        images[mirrored] = torch.flip(images[mirrored], dims=(-1,))
    if color_jitter <= 0 and stain_jitter <= 0:
        return images
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images
    if color_jitter > 0:
        n = images.shape[0]
        brightness = 1 + (torch.rand(n, 1, 1, 1) * 2 - 1) * color_jitter
        contrast = 1 + (torch.rand(n, 1, 1, 1) * 2 - 1) * color_jitter
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = ((images * brightness - mean) * contrast + mean).clamp_(0, 1)
    if stain_jitter > 0:
        n, channels = images.shape[:2]
        gains = 1 + (torch.rand(n, channels, 1, 1) * 2 - 1) * stain_jitter
        saturation = 1 + (torch.rand(n, 1, 1, 1) * 2 - 1) * stain_jitter
        tinted = images * gains
        grey = tinted.mean(dim=1, keepdim=True)
        images = (grey + (tinted - grey) * saturation).clamp_(0, 1)
    return images
