"""The demo: the whole job on the NIH malaria cells, in one command.

Locate (or download) the data, split it by slide, train cellscreen's default
recipe, export its fp32 graph and its 8-bit graph (calibrated on training
cells) beside it, evaluate on the held-out slides and write a report.
"""

from __future__ import annotations

import time
from pathlib import Path

from cellscreen.config import load_config
from cellscreen.data.fetch import fetch_dataset
from cellscreen.data.sources import get_profile, resolve_data_root, resolve_dataset_dir
from cellscreen.engine.train import train
from cellscreen.errors import UserError
from cellscreen.evaluate.run import report_on_subset
from cellscreen.serve.export import export_model
from cellscreen.serve.runtime import FP32_NAME, INT8_NAME

__all__ = ["calibration_cells", "run_demo"]


def calibration_cells(train_images, count: int = 512):
    """``count`` cells spread evenly over a training subset's uint8 ``(N, 3, H, W)`` pixels, as the int8
    export takes them (``(count, H, W, 3)``), with what they are."""
    picked = train_images[:: max(1, len(train_images) // count)][:count].permute(0, 2, 3, 1).numpy()
    return picked, f"{len(picked)} cells of the training slides"


def run_demo(*, out: str | Path = "runs/demo", data: str | None = None, epochs: int | None = None,
             progress: bool = True, overwrite: bool = False) -> Path:
    """Run the demo into ``out`` and return the path of its Markdown report."""
    start = time.perf_counter()
    out = Path(out)
    profile = get_profile("malaria-nih")
    try:  # the data root, the dataset's folder or its class folders' parent, if the cells are already here
        root = resolve_dataset_dir(profile, data)
    except UserError:  # not here: download the official archive into the data root
        root = fetch_dataset(profile, resolve_data_root(data), progress=progress)
    print(f"[demo] data: {root}")
    config = load_config("default", {"dataset": "malaria-nih", "epochs": epochs})
    print(f"[demo] training {config.model} at {config.input_size or 'its default'} px for {config.epochs} epochs "
          "on a 70/15/15 split by slide")
    result = train(config, out=out / "run", data=str(root), overwrite=overwrite, progress=progress)
    print(f"[demo] trained in {result.seconds / 60:.1f} min")
    cells = calibration_cells(result.data.subsets["train"].images)
    try:
        fp32 = export_model(result.checkpoint, result.run / FP32_NAME, overwrite=overwrite, cells=cells)
        print(f"[demo] fp32 graph for predict and serve: {fp32.path}")
    except UserError as exc:  # predict and serve then export the checkpoint into the cache on first use
        print(f"[demo] no fp32 graph beside the run: {exc}")
    try:
        int8 = export_model(result.checkpoint, result.run / INT8_NAME, fmt="onnx-int8", overwrite=overwrite,
                            cells=cells)
        print(f"[demo] 8-bit graph for --engine int8: {int8.path} (same class as PyTorch for "
              f"{int8.agreement:.1%} of {int8.checked_on})")
    except UserError as exc:  # the fp32 model stands; only the faster engine is missing
        print(f"[demo] no 8-bit graph: {exc}")
    index = result.data.index
    evaluation, report = report_on_subset(
        result.run, result.data.subsets["test"], profile=profile, root=root, out=out / "report",
        subset_name="test (held-out slides)", skipped=len(index.skipped),
        notes=[f"demo wall time {(time.perf_counter() - start) / 60:.1f} min"])
    m = evaluation["metrics"]
    print(f"[demo] held-out slides: accuracy {m['accuracy']:.4f}, ROC AUC {m['roc_auc']:.4f}, "
          f"sensitivity {m['sensitivity']:.4f}, specificity {m['specificity']:.4f}")
    return report
