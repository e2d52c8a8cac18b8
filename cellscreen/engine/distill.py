"""Soft targets from a trained teacher, for training a student on them (knowledge distillation).

The teacher (a run, checkpoint or ensemble of cellscreen's) predicts every training cell once, unaugmented,
at its own input size and resize, with its fitted temperature; the student then learns from a blend of each
cell's label and the teacher's probabilities.  A larger, slower teacher can so pass on part of what it learnt
to a model that is cheap to run.  The teacher must have been trained on the same split and fold as the student:
one that saw the student's test cells would carry them into its training.
"""

from __future__ import annotations

import numpy as np
import torch

from cellscreen.data.cache import CacheSpec, build_cache
from cellscreen.engine.kinds import load_checkpoint
from cellscreen.engine.data import PreparedData
from cellscreen.engine.inference import predict_proba, resolve_precision
from cellscreen.errors import UserError

__all__ = ["teacher_probabilities"]


def teacher_probabilities(teacher: str, prepared: PreparedData, *, fold: int | None, subset: str = "train",
                          precision: str = "auto", workers: int | None = None, progress: bool = True) -> torch.Tensor:
    """The teacher's class probabilities ``(N, classes)`` for the cells of ``prepared.subsets[subset]``,
    in their order."""
    checkpoint = load_checkpoint(teacher)
    split = checkpoint.meta.get("split") or {}
    if split.get("sha256") != prepared.manifest.sha256 or split.get("fold") != fold:
        raise UserError(f"the teacher {teacher} was trained on split {str(split.get('sha256'))[:12]} fold "
                        f"{split.get('fold')}, this run on {prepared.manifest.sha256[:12]} fold {fold}: a teacher "
                        "must come from the same split and fold, or it may have seen this run's test cells")
    if checkpoint.classes != prepared.classes:
        raise UserError(f"the teacher {teacher} has classes {checkpoint.classes}, this run {prepared.classes}")
    if checkpoint.border_crop != prepared.index.profile.border_crop:
        raise UserError(f"the teacher {teacher} crops {checkpoint.border_crop} px of border, this dataset "
                        f"{prepared.index.profile.border_crop}: it was trained on other pixels")
    cells = prepared.subsets[subset]
    wanted = set(cells.paths)
    records = [r for r in prepared.index.records if r.path in wanted]
    config = checkpoint.data_config
    spec = CacheSpec(size=config.input_size, border_crop=checkpoint.border_crop, interpolation=config.interpolation)
    cache = build_cache(prepared.index.root, records, spec, workers=workers, progress=progress)
    sha256_of = {r.path: r.sha256 for r in records}
    missing = [p for p in cells.paths if sha256_of.get(p) not in cache]
    if missing:  # the same files and decoder as the student's cache: only a file changed meanwhile gets here
        raise UserError(f"{len(missing)} training file(s) could not be read at the teacher's size, e.g. {missing[0]}")
    rows = np.array([cache.row_of[sha256_of[p]] for p in cells.paths], dtype=np.int64)
    proba = predict_proba(checkpoint.model, cache.images[rows], precision=resolve_precision(precision))
    return torch.from_numpy(np.ascontiguousarray(proba, dtype=np.float32))
