"""The exported graph's input normalisation written two ways, in fp32 and int8: speed and agreement.

    CELLSCREEN_DATA=../shared/data python bench/int8_normalisation.py --model malaria

"sub_div" is ``(x - mean) / std`` (what the fp32 export keeps); "conv" is the same as a 1x1 convolution per
channel (what the int8 export uses).  Both int8 graphs are calibrated on the same 256 real cells.  Each
graph runs on one thread over the same batches, the variants alternating over ``--rounds``; prints the best
ms per cell of each and how far each variant's probabilities are from "sub_div" of the same precision.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from cellscreen.engine.checkpoint import load_checkpoint
from cellscreen.serve import export
from cellscreen.serve.runtime import INPUT_NAME, onnx_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="malaria")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.model)
    cells, where = export.check_images(checkpoint, count=512)
    calibration, check = cells[0::2], cells[1::2]
    description = export.describe(checkpoint, "onnx-int8")
    sessions = {}
    for variant in ("sub_div", "conv"):
        blob = export.onnx_bytes(checkpoint, normalise_as_conv=variant == "conv")
        sessions[(variant, "fp32")] = onnx_session(blob, 1)
        sessions[(variant, "int8")] = onnx_session(export.quantize_int8(blob, calibration, description), 1)
    batch = check[:64]
    best = {key: float("inf") for key in sessions}
    for _ in range(args.rounds):
        for key, session in sessions.items():
            session.run(None, {INPUT_NAME: batch})
            start = time.perf_counter()
            for _ in range(20):
                session.run(None, {INPUT_NAME: batch})
            best[key] = min(best[key], (time.perf_counter() - start) / 20 / len(batch) * 1e3)
    proba = {key: session.run(None, {INPUT_NAME: check})[0] for key, session in sessions.items()}
    result = {"model": args.model, "cells": where, "threads": 1, "batch": len(batch), "ms_per_cell": {}}
    for (variant, precision), ms in best.items():
        reference = proba[("sub_div", precision)]
        ours = proba[(variant, precision)]
        result["ms_per_cell"][f"{variant} {precision}"] = {
            "best": round(ms, 4), "max_probability_difference": float(np.abs(ours - reference).max()),
            "same_class": float((ours.argmax(1) == reference.argmax(1)).mean())}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
