"""Small building blocks shared by cellscreen's own networks."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["Dropout", "random_words"]

_NUMPY_FROM = 16384  # fewer words than this come from PyTorch: numpy's generator costs more to set up


def random_words(count: int) -> torch.Tensor:
    """``count`` uniformly random int64 values.

    Large counts come from numpy's SFC64 generator, about twice as fast on the CPU as ``torch.randint``
    over the whole int64 range (``bench/dropout_mask.py``).  Its seed is one draw from PyTorch's default
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
    64-bit draw gives four 16-bit values, each compared with a threshold, so a
    value is dropped with probability ``round(p * 65536) / 65536`` (within
    1e-5 of ``p``) and the kept ones are scaled by ``1 / (1 - p)`` as usual.
    The draws are seeded from PyTorch's default generator (``random_words``), so
    ``torch.manual_seed`` makes them repeatable.  Other devices use PyTorch's own
    dropout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.p >= 1:
            return super().forward(x)
        n = x.numel()
        bits = random_words((n + 3) // 4)
        threshold = round(self.p * 65536) - 32768
        words = bits.view(torch.int16)[:n]
        # the mask takes x's memory layout: multiplying a channels-last x by a contiguous mask ran about
        # 5x slower than with matching layouts (bench/dropout_mask.py)
        dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
        keep = (words.as_strided(x.shape, x.stride()) if dense else words.view(x.shape)) >= threshold
        # bool -> float conversion is not vectorised on the CPU; the same bytes read as uint8 convert about
        # 6x faster (1M values: 0.67 -> 0.10 ms)
        scale = keep.view(torch.uint8).to(x.dtype).mul_(1.0 / (1.0 - self.p))  # one multiply forward and one backward
        return x * scale
