"""libspng against Pillow on every PNG of the data root: the same pixels, and how fast.

    CELLSCREEN_DATA=../shared/data python bench/png_decoders.py

Decodes each PNG with ``decode_image`` twice, once with pyspng and once with Pillow only, and counts
the files whose arrays differ (the answer must be 0) and the files the fast path took.  Then times
``prepare_bytes`` (decode, crop, pad, resize to 64 px) on 1,000 in-memory files with each, alternated
over three rounds (the best kept), and the padding and resizing alone.  Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from cellscreen.data import images


def _per_file_ms(datas: list[bytes], fast) -> float:
    images.pyspng = fast
    start = time.perf_counter()
    for data in datas:
        images.prepare_bytes(data, size=64)
    return 1000 * (time.perf_counter() - start) / len(datas)


def main() -> None:
    root = Path(os.environ.get("CELLSCREEN_DATA", "../shared/data"))
    fast = images.pyspng
    if fast is None:
        raise SystemExit("pyspng is not installed")
    files = sorted(root.rglob("*.png"))
    differ, took_fast = 0, 0
    for path in files:
        data = path.read_bytes()
        images.pyspng = fast
        took_fast += images._plain_png(data, images.MAX_PIXELS) is not None
        a = images.decode_image(data)[0]
        images.pyspng = None
        b = images.decode_image(data)[0]
        differ += not np.array_equal(a, b)
    sample = [p.read_bytes() for p in files[:: max(1, len(files) // 1000)][:1000]]
    best = {"libspng": float("inf"), "Pillow": float("inf")}
    for _ in range(3):
        for name, decoder in (("libspng", fast), ("Pillow", None)):
            best[name] = min(best[name], _per_file_ms(sample, decoder))
    images.pyspng = fast
    decoded = [images.decode_image(data)[0] for data in sample]
    resize = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for array in decoded:
            images.resize_square(array, 64)
        resize = min(resize, 1000 * (time.perf_counter() - start) / len(decoded))
    print(json.dumps({"pngs": len(files), "fast_path": took_fast, "arrays_differ": differ,
                      "prepare_ms_per_file": {k: round(v, 3) for k, v in best.items()},
                      "of_which_pad_and_resize_ms": round(resize, 3),
                      "speed_up": round(best["Pillow"] / best["libspng"], 2)}))


if __name__ == "__main__":
    main()
