"""Prediction throughput: PNG files to a results file, on PyTorch, onnxruntime and the 8-bit graph.

    python bench/predict_speed.py --cells 6000 [--model malaria] [--workers N]

Takes ``--cells`` NIH malaria cells (both classes, spread over the slides),
loads the model once per engine, then times ``predict_files`` end to end:
walking, reading and decoding the PNGs, cropping and resizing, the model,
and writing the CSV.  Also times the model alone on already prepared pixels
(batches of 256), which is where the engines differ, and the decoding
alone, with libspng and with Pillow only.  ``--model``'s 8-bit graph
(``model.int8.onnx``) is timed when it has one.  Prints one JSON line per measurement and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=6000)
    parser.add_argument("--model", default="malaria")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    parser.add_argument("--data", default=None, help="data root (default: $CELLSCREEN_DATA, else the cache)")
    parser.add_argument("--repeat", type=int, default=2, help="end-to-end runs per engine; the best is kept")
    args = parser.parse_args()

    from cellscreen.data.sources import get_profile, resolve_dataset_dir
    from cellscreen.serve.predict import _prepare_task, list_inputs, predict_files
    from cellscreen.errors import UserError
    from cellscreen.serve.runtime import load_predictor

    root = resolve_dataset_dir(get_profile("malaria-nih"), None, data=args.data)
    files = [path for path, reason in list_inputs([root]) if reason is None]
    files = files[:: max(1, len(files) // args.cells)][: args.cells]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        predictors = {engine: load_predictor(args.model, engine=engine) for engine in ("torch", "onnx")}
        try:
            predictors["int8"] = load_predictor(args.model, engine="int8")
        except UserError as exc:
            print(f"no int8 run: {exc}", flush=True)
        prepare = (predictors["onnx"].input_size, predictors["onnx"].border_crop, predictors["onnx"].interpolation)
        from cellscreen.data import images as image_io

        fast = image_io.pyspng
        for decoder in ("libspng", "Pillow", "libspng", "Pillow"):  # alternated: a busy moment hurts both
            image_io.pyspng = fast if decoder == "libspng" else None
            start = time.perf_counter()
            images, _ = _prepare_task(files[:1000], *prepare)
            decode = 1000 / (time.perf_counter() - start)
            rows.append({"what": f"decode ({decoder}) + resize only, one process", "engine": "-", "cells": 1000,
                         "cells_per_s": round(decode, 1)})
            print(json.dumps(rows[-1]), flush=True)
        image_io.pyspng = fast
        for engine, predictor in predictors.items():
            predictor.predict(images[:256])  # warm-up
            start = time.perf_counter()
            for _ in range(3):
                for i in range(0, len(images), 256):
                    predictor.predict(images[i:i + 256])
            rows.append({"what": "model only (prepared pixels)", "engine": engine, "cells": 3 * len(images),
                         "cells_per_s": round(3 * len(images) / (time.perf_counter() - start), 1)})
            print(json.dumps(rows[-1]), flush=True)
        for engine, predictor in predictors.items():
            best = 0.0
            for k in range(args.repeat):
                out = Path(tmp) / f"{engine}{k}.csv"
                start = time.perf_counter()
                counts = predict_files(predictor, files, out, workers=args.workers, progress=False)
                seconds = time.perf_counter() - start
                assert counts["predicted"] == len(files), counts
                best = max(best, len(files) / seconds)
            rows.append({"what": "end to end: PNG files -> CSV", "engine": engine, "cells": len(files),
                         "cells_per_s": round(best, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| measurement | engine | cells | cells/s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['engine']} | {r['cells']:,} | {r['cells_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
