"""PyTorch's 2x2 max-pooling against two ways of writing it without the int64 indices, forward and backward.

    python bench/pool_variants.py

The seed malaria CNN spends about a third of its bf16 training step in its three max-poolings
(``bench/step_profile.py --preset seed_malaria_cnn``): the forward pass writes an int64 index per output,
and the backward pass zeroes the full-size gradient before scattering into it.  This times one forward and
backward pass of each way on the seed CNN's three pooling shapes (batch 16, channels-last, bf16 and
fp32), after the process settings training makes:

* ``native``: ``F.max_pool2d`` (what the model uses);
* ``amax``: the 2x2 blocks as two extra dimensions of a view, reduced by ``amax``;
* ``compare``: ``F.max_pool2d`` without indices, and a backward pass that sends the gradient to where
  the input equals the nearest-upsampled output (ties get it more than once, so it is only a bound).

Prints one JSON line per shape and dtype: ms per forward and backward pass, best of three rounds.
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F

from cellscreen.cpu import tune_process


def amax_pool(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, c, h // 2, 2, w // 2, 2).amax((3, 5))


class ComparePool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = F.max_pool2d(x, 2)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        upsampled = F.interpolate(out, scale_factor=2, mode="nearest")
        return torch.where(x == upsampled, F.interpolate(grad, scale_factor=2, mode="nearest"), 0)


WAYS = {"native": lambda x: F.max_pool2d(x, 2), "amax": amax_pool, "compare": ComparePool.apply}


def _ms(pool, x: torch.Tensor, grad: torch.Tensor, steps: int = 30) -> float:
    for _ in range(5):
        pool(x).backward(grad)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            pool(x).backward(grad)
        best = min(best, 1000 * (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    tune_process()
    torch.set_num_threads(2)
    for channels, side in ((16, 128), (32, 64), (64, 32)):
        for dtype in (torch.bfloat16, torch.float32):
            x = torch.randn(16, channels, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
            x.requires_grad_()
            grad = torch.randn(16, channels, side // 2, side // 2, dtype=dtype)
            grad = grad.contiguous(memory_format=torch.channels_last)
            times = {name: round(_ms(pool, x, grad), 3) for name, pool in WAYS.items()}
            print(json.dumps({"shape": [16, channels, side, side], "dtype": str(dtype).removeprefix("torch."),
                              "ms_forward_backward": times}))


if __name__ == "__main__":
    main()
