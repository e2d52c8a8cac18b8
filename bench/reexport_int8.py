"""Export a trained run's 8-bit graph (or its fp32 one) again from its own training cells, as ``cellscreen demo``
made it.

For the bundled model after a change to how graphs are exported: the run's recorded settings rebuild its
split (refused unless it is the very split it was trained on, by the manifest's SHA-256 in ``model.json``)
and its cache, the same 512 training cells calibrate the graph, and ``export_model`` checks it against
the PyTorch model on them as it always does.

    CELLSCREEN_DATA=../shared/data python bench/reexport_int8.py cellscreen/weights/malaria --overwrite
    CELLSCREEN_DATA=../shared/data python bench/reexport_int8.py cellscreen/weights/malaria --format onnx --overwrite

With ``--format onnx`` the same cells check the fp32 graph (``model.onnx``), which needs no calibration.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cellscreen.config import load_config
from cellscreen.demo import calibration_cells
from cellscreen.engine.data import prepare_data
from cellscreen.errors import UserError
from cellscreen.serve.export import export_model
from cellscreen.serve.runtime import FP32_NAME, INT8_NAME


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a folder with model.json (a run's, or cellscreen/weights/malaria)")
    parser.add_argument("--data", default=None, help="data root (default: $CELLSCREEN_DATA)")
    parser.add_argument("--format", choices=("onnx-int8", "onnx"), default="onnx-int8",
                        help="the 8-bit graph (model.int8.onnx) or the fp32 one (model.onnx)")
    parser.add_argument("--overwrite", action="store_true", help="replace the folder's existing graph")
    args = parser.parse_args(argv)
    run = Path(args.run)
    meta = json.loads((run / "model.json").read_text())
    if "config" not in meta.get("train", {}) or "sha256" not in meta.get("split", {}):
        raise SystemExit(f"{run / 'model.json'} does not record the settings and split it was trained with, "
                         "so its training cells cannot be found again; export it with `cellscreen export`")
    recorded = meta["train"]["config"]
    config = load_config("default", recorded)
    data = prepare_data(config, data=args.data, input_size=meta["data_config"]["input_size"],
                        interpolation=recorded["interpolation"], progress=False)
    if data.manifest.sha256 != meta["split"]["sha256"]:
        raise UserError(f"the rebuilt split ({data.manifest.sha256[:12]}...) is not the one {run} was trained on "
                        f"({meta['split']['sha256'][:12]}...); nothing written")
    name = INT8_NAME if args.format == "onnx-int8" else FP32_NAME
    report = export_model(run, run / name, fmt=args.format, overwrite=args.overwrite,
                          cells=calibration_cells(data.subsets["train"].images))
    print(json.dumps({"path": str(report.path), "agreement": report.agreement,
                      "max_probability_difference": report.max_difference, "checked_on": report.checked_on}))


if __name__ == "__main__":
    main()
