"""The exported graph's input normalisation written three ways, in fp32 and int8: speed and agreement.

    CELLSCREEN_DATA=../shared/data python bench/int8_normalisation.py --model malaria

"sub_div" is ``(x - mean) / std`` (what the fp32 export keeps); "conv" is the same as a 1x1 convolution per
channel (what the int8 export used before); "fold" divides the first convolution's weights by ``std`` and
subtracts the mean as a whole map (what the int8 export uses).  All int8 graphs are calibrated on the same
256 real cells.  Each
graph runs on one thread over the same batches, the variants alternating over ``--rounds``; prints the best
ms per cell of each and how far each variant's probabilities are from "sub_div" of the same precision;
with ``--profile``, also onnxruntime's profile of each int8 graph (percent of node time per operator type).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from cellscreen.engine.checkpoint import load_checkpoint
from cellscreen.serve import export
from cellscreen.serve.runtime import INPUT_NAME, onnx_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="malaria")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also the share of each operator type (int8)")
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.model)
    cells, where = export.check_images(checkpoint, count=512)
    calibration, check = cells[0::2], cells[1::2]
    description = export.describe(checkpoint, "onnx-int8")
    sessions, blobs = {}, {}
    for variant in export.NORMALISATIONS:
        blob = export.onnx_bytes(checkpoint, normalise=variant)
        blobs[variant] = export.quantize_int8(blob, calibration, description)
        sessions[(variant, "fp32")] = onnx_session(blob, 1)
        sessions[(variant, "int8")] = onnx_session(blobs[variant], 1)
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
    shares = {}
    if args.profile:  # onnxruntime's own profiler: the share of each operator type in each int8 graph
        for variant in export.NORMALISATIONS:
            shares[f"{variant} int8"] = _operator_shares(blobs[variant], batch)
    result = {"model": args.model, "cells": where, "threads": 1, "batch": len(batch), "ms_per_cell": {}}
    for (variant, precision), ms in best.items():
        reference = proba[("sub_div", precision)]
        ours = proba[(variant, precision)]
        result["ms_per_cell"][f"{variant} {precision}"] = {
            "best": round(ms, 4), "max_probability_difference": float(np.abs(ours - reference).max()),
            "same_class": float((ours.argmax(1) == reference.argmax(1)).mean())}
    if shares:
        result["operator_share_percent"] = shares
    print(json.dumps(result, indent=2))


def _operator_shares(blob: bytes, batch: np.ndarray, runs: int = 30) -> dict[str, float]:
    """Percent of the node time per operator type over ``runs`` runs on one thread, largest first."""
    import collections
    import os

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "profile")
        session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, {INPUT_NAME: batch})
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node":
            totals[event["args"].get("op_name", "?")] += event["dur"]
    whole = sum(totals.values()) or 1
    return {op: round(100 * t / whole, 1) for op, t in totals.most_common()}


if __name__ == "__main__":
    main()
