"""libspng against Pillow on every PNG of the data root: the same pixels, and how fast.

    CELLSCREEN_DATA=../shared/data python bench/png_decoders.py

Decodes each PNG with ``decode_image`` twice, once with pyspng and once with Pillow only, and counts
the files whose arrays differ (the answer must be 0) and the files the fast path took.  Then times
``prepare_bytes`` (decode, crop, pad, resize to 64 px) on 1,000 in-memory files with each, alternated
over three rounds (the best kept), and the padding and resizing alone.  Other PNG decoders found in the
environment (imagecodecs, OpenCV; not dependencies of cellscreen, e.g. ``pip install --target /tmp/dec
imagecodecs opencv-python-headless`` and ``PYTHONPATH=/tmp/dec``) are timed on decoding alone beside pyspng,
with a check that they give the same pixels (on the plain 8-bit RGB files of the sample).  Prints one JSON line.
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


def _other_decoders() -> dict:
    """Decoders of other libraries that are importable here, each a function of the file's bytes."""
    found = {}
    try:
        import imagecodecs

        found["imagecodecs"] = imagecodecs.png_decode
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
        found["opencv"] = lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    except (ImportError, AttributeError):
        pass
    return found


def _decode_only(sample: list[bytes], reference: list[np.ndarray], decoders: dict) -> dict:
    """Best of three rounds of ms per file for each decoder, and whether it gave the reference's pixels."""
    if not sample:
        return {}
    best = dict.fromkeys(decoders, float("inf"))
    for _ in range(3):
        for name, decode in decoders.items():
            start = time.perf_counter()
            for data in sample:
                decode(data)
            best[name] = min(best[name], 1000 * (time.perf_counter() - start) / len(sample))
    return {name: {"decode_ms_per_file": round(best[name], 3),
                   "same_pixels": all(np.array_equal(decoders[name](d), r) for d, r in zip(sample, reference))}
            for name in decoders}


def main() -> None:
    root = Path(os.environ.get("CELLSCREEN_DATA", "../shared/data"))
    fast = images.pyspng
    if fast is None:
        raise SystemExit("pyspng is not installed")
    files = sorted(root.rglob("*.png"))
    if not files:
        raise SystemExit(f"no PNG files under {root} (set CELLSCREEN_DATA to the data folder)")
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
    plain = [(data, array) for data, array in zip(sample, decoded) if images._plain_png(data, images.MAX_PIXELS)]
    others = _decode_only([d for d, _ in plain], [a for _, a in plain], {"pyspng": fast.load, **_other_decoders()})
    print(json.dumps({"pngs": len(files), "fast_path": took_fast, "arrays_differ": differ,
                      "prepare_ms_per_file": {k: round(v, 3) for k, v in best.items()},
                      "of_which_pad_and_resize_ms": round(resize, 3),
                      "speed_up": round(best["Pillow"] / best["libspng"], 2),
                      "decoding_alone": others}))


if __name__ == "__main__":
    main()
