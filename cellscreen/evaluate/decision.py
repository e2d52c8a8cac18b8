"""Setting a trained model's decision threshold afterwards, without training again.

``set_decision(run, operating_point="sensitivity=0.98")`` predicts the run's validation cells (the ones its
split set aside for choosing) with the model, chooses the threshold as training would have
(``engine.threshold.choose_threshold``) and writes it into the run's ``model.json``; ``threshold=P`` writes
a given one.  The weights are not touched.
"""

from __future__ import annotations

import json
from pathlib import Path

from cellscreen.config import TrainConfig
from cellscreen.data.cache import CacheSpec, build_cache
from cellscreen.data.index import scan_dataset
from cellscreen.data.sources import get_profile, resolve_dataset_dir
from cellscreen.data.splits import read_manifest
from cellscreen.engine.data import load_subset, subset_rows
from cellscreen.engine.inference import predict_proba_at
from cellscreen.engine.kinds import load_checkpoint, resolve_checkpoint
from cellscreen.engine.threshold import run_decision
from cellscreen.errors import UserError
from cellscreen.files import atomic_write

__all__ = ["set_decision"]


def set_decision(model: str | Path, *, operating_point: str | None = None, threshold: float | None = None,
                 data: str | None = None, workers: int | None = None, progress: bool = True) -> dict:
    """Choose (``operating_point``) or set (``threshold``) the decision threshold of the run ``model`` and
    write it into its ``model.json``; return what was written (``decision_threshold`` and ``decision``)."""
    if (operating_point is None) == (threshold is None):
        raise UserError("give --operating-point (chosen on the validation cells) or --threshold, one of them")
    path = resolve_checkpoint(model)
    meta = json.loads(path.read_text())
    classes, positive = meta["classes"], meta.get("positive_class")
    config = TrainConfig(operating_point=operating_point, decision_threshold=threshold)  # checks both
    if threshold is not None:
        decision = run_decision(config, classes, positive, [], lambda: None)
    else:
        decision = run_decision(config, classes, positive, *_validation_cells(path, meta, data, workers, progress))
    atomic_write(path, json.dumps({**meta, **decision}, indent=2) + "\n")
    return decision


def _validation_cells(path: Path, meta: dict, data: str | None, workers: int | None, progress: bool):
    """The run's validation targets and a function giving the model's (calibrated) probabilities for them."""
    split = path.parent / "split.csv"
    if not split.is_file() and meta.get("no_shared_validation"):  # an ensemble (engine/ensemble.py)
        raise UserError(f"no operating point can be chosen for the ensemble {path.parent}: "
                        f"{meta['no_shared_validation']}, so they share no validation cells; give --threshold instead")
    if not split.is_file():
        raise UserError(f"{path.parent} has no split.csv: an operating point is chosen on the validation cells of "
                        "the run's own split; give --threshold instead")
    settings = meta.get("train", {}).get("config", {})
    rows = subset_rows(read_manifest(split), settings.get("fold"), val_seed=settings.get("split_seed", 0))["val"]
    profile = get_profile(meta.get("dataset") or "folder", group_regex=meta.get("group_regex"))
    root = resolve_dataset_dir(profile, data or meta.get("root"))
    wanted = {row["path"] for row in rows}
    index = scan_dataset(root, profile, workers=workers, progress=progress)
    records = [r for r in index.records if r.path in wanted]
    checkpoint = load_checkpoint(path)
    config = checkpoint.data_config
    spec = CacheSpec(size=config.input_size, border_crop=checkpoint.border_crop, interpolation=config.interpolation)
    cache = build_cache(root, records, spec, workers=workers, progress=progress)
    cells = load_subset(cache, rows, {r.path: r.sha256 for r in records}, checkpoint.classes)
    temperature = float(meta.get("temperature", 1.0))

    def probabilities():
        images = cells.images.permute(0, 2, 3, 1).numpy()
        return predict_proba_at(checkpoint.model, images, [temperature])[0]

    return cells.targets.numpy(), probabilities
