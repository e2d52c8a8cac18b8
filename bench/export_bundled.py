"""Export a trained run's fp32 and 8-bit ONNX graphs beside it, as ``cellscreen demo`` does for the bundled model.

    OMP_NUM_THREADS=1 CELLSCREEN_DATA=../shared/data python bench/export_bundled.py RUN

The run's own training cells (read again from its ``config.yaml``: the split, the relabel files and the
extra training folders it named, all from the preprocessed cache) give the 512 cells, spread evenly over
them, that check both graphs against PyTorch and calibrate the 8-bit one: ``demo.calibration_cells``, the
same as the demo. Writes ``RUN/model.onnx`` and ``RUN/model.int8.onnx`` (each with its ``.json``); the
files of ``cellscreen/weights/malaria/`` are these and the run's ``model.json`` and ``model.safetensors``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cellscreen.config import load_config
from cellscreen.demo import calibration_cells
from cellscreen.engine.data import prepare_data
from cellscreen.engine.extra_cells import with_extra_training_cells
from cellscreen.serve.export import export_model
from cellscreen.serve.runtime import FP32_NAME, INT8_NAME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder of `cellscreen train` (config.yaml, model.json)")
    parser.add_argument("--data", default=None, help="data root (default: $CELLSCREEN_DATA)")
    parser.add_argument("--overwrite", action="store_true", help="replace graphs already beside the run")
    args = parser.parse_args()
    run = Path(args.run)
    config = load_config(str(run / "config.yaml"))
    prepared = prepare_data(config, data=args.data, input_size=config.input_size,
                            interpolation=config.interpolation, workers=1, progress=False)
    prepared = with_extra_training_cells(prepared, config.extra_train, size=config.input_size,
                                         interpolation=config.interpolation)
    cells = calibration_cells(prepared.subsets["train"].images)
    fp32 = export_model(run / "model.json", run / FP32_NAME, overwrite=args.overwrite, cells=cells)
    print(f"fp32 graph: {fp32.path}")
    int8 = export_model(run / "model.json", run / INT8_NAME, fmt="onnx-int8", overwrite=args.overwrite, cells=cells)
    print(f"8-bit graph: {int8.path} (same class as PyTorch for {int8.agreement:.1%} of {int8.checked_on})")


if __name__ == "__main__":
    main()
