"""The random words behind cellscreen's dropout mask: ``torch.randint`` against numpy's SFC64.

    python bench/dropout_mask.py --rounds 5

Draws the words one training step of the seed malaria CNN needs (batch 16 at 128 px: its four dropout
layers see 1,048,576, 524,288, 262,144 and 1,024 values, a word per eight, since their rates take 8-bit
draws) both ways, alternating over ``--rounds`` rounds, and prints the best ms per step of each.  Then
checks the numpy way's words: that ``torch.manual_seed`` repeats them and that their 16-bit quarters and
8-bit eighths are uniform.  Then the mask's memory layout: the four layers' bf16 channels-last inputs
(as training under autocast sees them) multiplied by a mask laid out as the input (what ``Dropout``
does) and by one in the default contiguous layout.  Last, the mask's conversion from bool to the
input's dtype, directly and with the bytes read as uint8 (what ``Dropout`` does).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from cellscreen.models.layers import random_words

VALUES = (16 * 16 * 64 * 64, 16 * 32 * 32 * 32, 16 * 64 * 16 * 16, 16 * 64)  # the seed CNN's dropout inputs


def _torch_words(count: int) -> torch.Tensor:
    return torch.randint(-2**63, 2**63 - 1, (count,), dtype=torch.int64)


def _best_ms(ways: dict, run, rounds: int) -> dict[str, float]:
    """The best ms over ``rounds`` rounds of 20 calls of ``run(way)`` for each of ``ways``, alternated."""
    best = {name: float("inf") for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            start = time.perf_counter()
            for _ in range(20):
                run(way)
            best[name] = min(best[name], (time.perf_counter() - start) / 20 * 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts = [(n + 7) // 8 for n in VALUES]
    ways = {"torch.randint": _torch_words, "random_words (numpy SFC64 above 16,384 words)": random_words}
    best = _best_ms(ways, lambda draw: [draw(count) for count in counts], args.rounds)
    inputs = [torch.rand(16, n // (16 * side * side), side, side).to(torch.bfloat16) for n, side in
              zip(VALUES[:3], (64, 32, 16))]
    inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs] + [torch.rand(16, 64).to(torch.bfloat16)]
    masks = {"mask laid out as its input": [torch.rand_like(x) for x in inputs],  # empty_like keeps the layout
             "contiguous mask": [torch.rand(x.shape).to(torch.bfloat16) for x in inputs]}
    layout_best = _best_ms(masks, lambda scales: [x * scale for x, scale in zip(inputs, scales)], args.rounds)
    # the mask's conversion to the input's dtype: bool as it is, and the same bytes read as uint8
    keeps = [torch.rand_like(x) >= 0.3 for x in inputs]
    conversions = {"bool": lambda keep, x: keep.to(x.dtype),
                   "uint8 view": lambda keep, x: keep.view(torch.uint8).to(x.dtype)}
    conversion_best = _best_ms(conversions, lambda convert: [convert(keep, x) for x, keep in zip(inputs, keeps)],
                               args.rounds)
    torch.manual_seed(3)
    a = random_words(counts[0])
    torch.manual_seed(3)
    b = random_words(counts[0])
    quarters = a.view(torch.int16).float()
    print(json.dumps({"words_per_step": counts, "ms_per_step_best": {k: round(v, 3) for k, v in best.items()},
                      "manual_seed_repeats": bool(torch.equal(a, b)),
                      "int16_mean": round(float(quarters.mean()), 1), "int16_std": round(float(quarters.std()), 1),
                      "uniform_int16_std": round(65536 / 12 ** 0.5, 1),
                      "int8_mean": round(float(a.view(torch.int8).float().mean()), 2),
                      "int8_std": round(float(a.view(torch.int8).float().std()), 2),
                      "uniform_int8_std": round(256 / 12 ** 0.5, 2),
                      "multiply_ms_per_step_best": {k: round(v, 3) for k, v in layout_best.items()},
                      "mask_conversion_ms_per_step_best": {k: round(v, 3) for k, v in conversion_best.items()}}))


if __name__ == "__main__":
    main()
