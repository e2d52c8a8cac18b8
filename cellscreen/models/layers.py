"""Small building blocks shared by cellscreen's own networks."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["Dropout", "CellColourNorm", "random_words"]

_NUMPY_FROM = 16384  # fewer words than this come from PyTorch: numpy's generator costs more to set up


def random_words(count: int) -> torch.Tensor:
    """``count`` uniformly random int64 values.

    Large counts come from numpy's SFC64 generator, about twice as fast on the CPU as ``torch.randint``
    over the whole int64 range (BENCHMARKS.md, "Training: deterministic algorithms without the NaN fill").
    Its seed is one draw from PyTorch's default
    generator, so ``torch.manual_seed``, and a resumed run's restored generator state, repeat the values.
    """
    if count < _NUMPY_FROM:
        return torch.randint(-2**63, 2**63 - 1, (count,), dtype=torch.int64)
    seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    words = np.random.Generator(np.random.SFC64(seed)).integers(-2**63, 2**63 - 1, size=count, dtype=np.int64,
                                                                 endpoint=True)
    return torch.from_numpy(words)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper random mask on the CPU.

    PyTorch's CPU dropout draws one random number per value (``bernoulli_``),
    which took about a third of the seed malaria CNN's training step.  Here one
    64-bit draw gives eight 8-bit values (or four 16-bit ones), each compared
    with a threshold: a value is dropped with probability ``q``, ``p`` rounded
    to a multiple of 1/256 where that moves it by at most 1% of ``p`` (0.2, 0.3
    and 0.5 do), else to a multiple of 1/65536, and the kept ones are scaled
    by ``1 / (1 - q)``, so the mean is kept exactly.  The draws are seeded from
    PyTorch's default generator (``random_words``), so ``torch.manual_seed``
    makes them repeatable.  Other devices use PyTorch's own dropout.
    """

    def rate(self) -> tuple[float, int]:
        """The probability ``q`` a value is dropped with, and the bits drawn per value (8 or 16)."""
        for bits in (8, 16):
            steps = 1 << bits
            q = round(self.p * steps) / steps
            if (abs(q - self.p) <= 0.01 * self.p and q < 1) or bits == 16:
                return q, bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.p >= 1:
            return super().forward(x)
        q, bits = self.rate()
        if q >= 1:  # p within 1/131072 of 1: PyTorch's own mask
            return super().forward(x)
        per_word = 64 // bits
        n = x.numel()
        words = random_words((n + per_word - 1) // per_word).view(torch.int8 if bits == 8 else torch.int16)[:n]
        threshold = round(q * (1 << bits)) - (1 << (bits - 1))  # the values are signed
        # the mask takes x's memory layout: multiplying a channels-last x by a contiguous mask ran about
        # 5x slower than with matching layouts (BENCHMARKS.md, "Training: freed memory kept, denormals flushed")
        dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
        keep = (words.as_strided(x.shape, x.stride()) if dense else words.view(x.shape)) >= threshold
        # bool -> float conversion is not vectorised on the CPU; the same bytes read as uint8 convert about
        # 6x faster (the seed CNN's four masks: 1.61 -> 0.25 ms; BENCHMARKS.md, "Training: the seed CNN's input
        # path and dropout draws")
        scale = keep.view(torch.uint8).to(x.dtype).mul_(1.0 / (1.0 - q))  # one multiply forward and one backward
        return x * scale


class CellColourNorm(nn.Module):
    """Gives every cell the same average colour: each colour channel is divided by its mean over the
    cell's own pixels and multiplied by ``reference``'s.

    Slides differ in how strongly and in what tint they were stained, and a model tested on other slides
    meets tints it never saw.  Dividing by the cell's own mean colour takes a per-channel gain out of the
    image, whatever the slide; a parasite, darker and bluer than the cell around it, stays darker and bluer.
    The cell's pixels are those brighter than ``threshold`` in some channel: segmented cell crops lie on
    black, and the black stays black.  Works on the model's normalised input (``mean``, ``std``: the
    normalisation the model was given, per channel, for pixels in 0..1) and returns it normalised alike.
    ``reference``: the mean colour every cell is given (a grey level, their average, for other than 3 channels).
    """

    def __init__(self, mean, std, reference=(0.75, 0.58, 0.62), threshold: float = 0.06):
        super().__init__()
        reference = reference if len(reference) == len(mean) else (sum(reference) / len(reference),) * len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("reference", torch.tensor(reference, dtype=torch.float32).view(1, -1, 1, 1))
        self.threshold = float(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.rescale(x * self.std + self.mean) - self.mean) / self.std

    def rescale(self, pixels: torch.Tensor, scale: float = 1.0, block: int = 1) -> torch.Tensor:
        """``pixels`` (0..``scale``) with each colour multiplied by the cell's gain.

        ``block``: the pixels come as ``PixelUnshuffle(block)`` lays them out, colour ``c`` in channels
        ``c * block**2`` to ``(c + 1) * block**2 - 1``; the gains are the same as for the pixels before.
        """
        n, channels, height, width = pixels.shape
        grouped = pixels.reshape(n, -1, block * block, height, width)  # (N, colour, block position, H, W)
        cell = (grouped.amax(1, keepdim=True) > self.threshold * scale).to(pixels.dtype)
        area = cell.sum((2, 3, 4), keepdim=True).clamp_min(1.0)
        colour = (grouped * cell).sum((2, 3, 4), keepdim=True) / area
        gain = self.reference.view(1, -1, 1, 1, 1) / (colour / scale).clamp_min(0.02)
        return (grouped * gain).reshape(n, channels, height, width)
