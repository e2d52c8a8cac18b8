"""Small building blocks shared by cellscreen's own networks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Dropout"]


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper random mask on the CPU.

    PyTorch's CPU dropout draws one random number per value (``bernoulli_``),
    which took about a third of the seed malaria CNN's training step.  Here one
    64-bit draw gives four 16-bit values, each compared with a threshold, so a
    value is dropped with probability ``round(p * 65536) / 65536`` (within
    1e-5 of ``p``) and the kept ones are scaled by ``1 / (1 - p)`` as usual.
    The draws come from PyTorch's default generator, so ``torch.manual_seed``
    makes them repeatable.  Other devices use PyTorch's own dropout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.p >= 1:
            return super().forward(x)
        n = x.numel()
        bits = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
        threshold = round(self.p * 65536) - 32768
        keep = bits.view(torch.int16)[:n].view(x.shape) >= threshold
        scale = keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))  # one multiply forward and one backward
        return x * scale
