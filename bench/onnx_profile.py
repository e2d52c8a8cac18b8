"""Where an ONNX model's time goes, node by node, on one thread: onnxruntime's own profiler.

    python bench/onnx_profile.py cellscreen/weights/malaria/model.int8.onnx

Runs ``--runs`` batches of ``--batch`` random uint8 cells (the graph's input size) after three warm-up
runs, and prints one JSON line: the ms per cell of the timed runs and the microseconds per cell of the
``--top`` slowest nodes (operator, node name, share of the node time).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cellscreen.serve.runtime import INPUT_NAME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an exported .onnx file")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "profile")
        session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
        size = session.get_inputs()[0].shape[1]
        batch = np.random.default_rng(0).integers(0, 256, (args.batch, size, size, 3), dtype=np.uint8)
        for _ in range(3):
            session.run(None, {INPUT_NAME: batch})
        start = time.perf_counter()
        for _ in range(args.runs):
            session.run(None, {INPUT_NAME: batch})
        ms = (time.perf_counter() - start) / args.runs / args.batch * 1e3
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[(event["args"].get("op_name", "?"), event["name"].removesuffix("_kernel_time"))] += event["dur"]
    whole = sum(totals.values()) or 1
    cells = (args.runs + 3) * args.batch  # the profile covers the warm-up runs too
    print(json.dumps({"model": args.model, "batch": args.batch, "threads": 1, "ms_per_cell": round(ms, 3),
                      "slowest_nodes": [{"op": op, "node": node, "us_per_cell": round(t / cells, 1),
                                         "share": round(t / whole, 3)}
                                        for (op, node), t in totals.most_common(args.top)]}))


if __name__ == "__main__":
    main()
