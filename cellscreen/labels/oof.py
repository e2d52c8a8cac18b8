"""Out-of-fold probabilities: every cell scored by a model that never saw its slide.

The cells are split into k folds by group (``make_split``: scikit-learn's ``StratifiedGroupKFold``, whole
slides per fold, byte-identical files kept together); for each fold the project's own ``train()`` fits a
model on the other folds (a seventh of their slides validates) and the fold's cells are predicted with it,
averaged over the 8 rotations and flips.  With several seeds, each fold is trained once per seed and the
probabilities are averaged: an ensemble, steadier where one model is unsure.

``oof.csv`` (path, slide, label, fold, one ``p_<class>`` column per class) is what the audit reads; a
finished fold is not trained again, so an interrupted audit resumes where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from cellscreen.data.index import DatasetIndex
from cellscreen.data.splits import SplitManifest, make_split
from cellscreen.errors import UserError
from cellscreen.files import atomic_write

__all__ = ["OutOfFold", "out_of_fold_probabilities", "read_oof", "write_oof"]


@dataclasses.dataclass
class OutOfFold:
    """One row per cell: where it is, its slide, its given label, the fold that held it out, and the
    held-out probabilities of ``classes`` (columns of ``proba``, in that order)."""

    paths: list[str]
    slides: list[str]
    labels: list[str]
    folds: list[int]
    classes: list[str]
    proba: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def label_indices(self) -> np.ndarray:
        position = {c: i for i, c in enumerate(self.classes)}
        return np.array([position[label] for label in self.labels], dtype=np.int64)

    def subset(self, keep: np.ndarray) -> OutOfFold:
        rows = np.flatnonzero(keep)
        return OutOfFold([self.paths[i] for i in rows], [self.slides[i] for i in rows],
                         [self.labels[i] for i in rows], [self.folds[i] for i in rows], self.classes,
                         self.proba[rows])


def write_oof(oof: OutOfFold, path: str | Path) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "slide", "label", "fold", *[f"p_{c}" for c in oof.classes]])
    for k in range(len(oof)):
        writer.writerow([oof.paths[k], oof.slides[k], oof.labels[k], oof.folds[k],
                         *[f"{v:.6f}" for v in oof.proba[k]]])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, buffer.getvalue())


def read_oof(path: str | Path) -> OutOfFold:
    """Read an ``oof.csv`` (this module's, or any CSV with path, slide, label, fold and ``p_<class>``
    columns); probabilities are renormalised to sum to 1 per row."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"out-of-fold file {path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        classes = [name[2:] for name in fields if name.startswith("p_")]
        missing = [name for name in ("path", "slide", "label", "fold") if name not in fields]
        if missing or len(classes) < 2:
            raise UserError(f"{path} is not an out-of-fold file: it needs the columns path, slide, label, fold and "
                            f"one p_<class> per class (found {','.join(fields)})")
        rows = list(reader)
    if not rows:
        raise UserError(f"{path} holds no cells")
    try:
        proba = np.array([[float(row[f"p_{c}"]) for c in classes] for row in rows], dtype=np.float64)
        folds = [int(row["fold"]) for row in rows]
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: a probability or fold is not a number ({exc})") from None
    unknown = sorted({row["label"] for row in rows} - set(classes))
    if unknown:
        raise UserError(f"{path}: label(s) {', '.join(unknown)} have no probability column")
    if not np.isfinite(proba).all() or (proba < 0).any():
        raise UserError(f"{path}: probabilities must be finite and not negative")
    proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
    return OutOfFold([row["path"] for row in rows], [row["slide"] for row in rows], [row["label"] for row in rows],
                     folds, classes, proba)


def _train_settings(index: DatasetIndex, preset: str, settings: dict | Sequence[str], split: Path, fold: int,
                    seed: int):
    """The run's settings: the preset, ``settings`` (a dict, or ``FIELD=VALUE`` strings as ``--set`` gives
    them), then the audit's own data, split, fold and seed."""
    from cellscreen.config import load_config  # training is only loaded when an audit trains

    overrides = {"dataset": index.profile.name, "split": str(split), "fold": fold, "seed": seed}
    if index.profile.name == "folder" or index.profile.group_kind == "group":  # the user's --group-regex
        overrides["group_regex"] = index.profile.group_regex
    if isinstance(settings, dict):
        return load_config(preset, {**settings, **overrides})
    config = load_config(preset, None, list(settings))
    return dataclasses.replace(config, **overrides)


def _fold_probabilities(run: Path, index: DatasetIndex, config, *, tta: bool, workers, progress):
    """(paths, probabilities, classes) of one fold's held-out cells, trained into ``run`` unless done before."""
    done = run / "held-out.csv"
    if not done.is_file():
        _train_and_predict(run, done, index, config, tta=tta, workers=workers, progress=progress)
    part = read_oof(done)  # as written, so that a resumed audit ranks exactly as one that never stopped
    return part.paths, part.proba, part.classes


def _train_and_predict(run: Path, done: Path, index: DatasetIndex, config, *, tta: bool, workers, progress) -> None:
    from cellscreen.engine.checkpoint import load_checkpoint  # training is only loaded when an audit trains
    from cellscreen.engine.inference import predict_proba
    from cellscreen.engine.train import train

    result = train(config, out=run, data=str(index.root), overwrite=True, progress=progress, workers=workers)
    held_out = result.data.subsets["test"]
    model = load_checkpoint(result.checkpoint).model
    proba = predict_proba(model, held_out.images.permute(0, 2, 3, 1).numpy(), tta=tta)
    classes = list(result.data.classes)
    write_oof(OutOfFold(held_out.paths, held_out.groups, [classes[t] for t in held_out.targets.tolist()],
                        [config.fold] * len(held_out), classes, proba), done)


def _without(manifest: SplitManifest, leave_out: set[str], fold: int, path: Path) -> Path:
    """A copy of the k-fold ``manifest`` at ``path`` whose training folds lack the cells in ``leave_out``
    (fold ``fold`` keeps all its cells, to be scored)."""
    rows = [row for row in manifest.rows if row["fold"] == str(fold) or row["path"] not in leave_out]
    kept = {key: manifest.meta[key] for key in ("dataset", "root", "by", "group_kind", "leaky", "seed")
            if key in manifest.meta}
    SplitManifest(rows=rows, meta={**kept, "method": "kfold", "n_images": len(rows),
                                   "left_out": len(manifest.rows) - len(rows)}).write(path, overwrite=True)
    return path


def out_of_fold_probabilities(index: DatasetIndex, *, out_dir: str | Path, folds: int = 5, preset: str = "default",
                              settings: dict | Sequence[str] | None = None, seeds: Sequence[int] = (0,),
                              split_seed: int = 0, tta: bool = True, leave_out: Collection[str] = (),
                              workers: int | None = None, progress: bool = True) -> OutOfFold:
    """Train ``folds`` x ``seeds`` models of ``preset`` (with ``settings`` overriding its fields) on the
    cells of ``index`` with the labels it gives, and return every cell's held-out probabilities.  Runs go to
    ``out_dir/runs/``; the split is ``out_dir/folds.csv``.

    Cells in ``leave_out`` (suspects of an earlier round) are not trained on, but still scored in their own
    fold: each fold then trains on its own copy of the split (``out_dir/splits/foldK.csv``)."""
    out_dir = Path(out_dir)
    settings = dict(settings) if isinstance(settings, dict) else list(settings or [])
    seeds = list(seeds)
    if not seeds:
        raise UserError("give at least one training seed")
    manifest = make_split(index, method="kfold", folds=folds, seed=split_seed)
    record = {"manifest_sha256": manifest.sha256, "preset": preset, "settings": settings, "seeds": seeds,
              "tta": tta}
    leave_out = set(leave_out)
    if leave_out:
        record["leave_out_sha256"] = hashlib.sha256("\n".join(sorted(leave_out)).encode()).hexdigest()
    recorded = out_dir / "oof-settings.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != record:
        raise UserError(f"{out_dir} holds an audit of other cells, labels or settings ({recorded}); "
                        "give another output folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    split = out_dir / "folds.csv"
    manifest.write(split, overwrite=True)
    atomic_write(recorded, json.dumps(record, indent=2) + "\n")
    row_of = {row["path"]: k for k, row in enumerate(manifest.rows)}
    total, classes = None, None
    for seed in seeds:
        for fold in range(folds):
            fold_split = _without(manifest, leave_out, fold, out_dir / "splits" / f"fold{fold}.csv") if leave_out \
                else split
            config = _train_settings(index, preset, settings, fold_split, fold, seed)
            name = f"fold{fold}" if len(seeds) == 1 else f"fold{fold}-seed{seed}"
            paths, proba, fold_classes = _fold_probabilities(out_dir / "runs" / name, index, config, tta=tta,
                                                             workers=workers, progress=progress)
            if total is None:
                classes = fold_classes
                total = np.zeros((len(manifest.rows), len(classes)))
                counts = np.zeros(len(manifest.rows))
            if fold_classes != classes:
                raise UserError(f"fold {fold} was trained on classes {fold_classes}, others on {classes}: every "
                                "class needs cells in the training part of every fold (use fewer folds)")
            rows = np.array([row_of[p] for p in paths], dtype=np.int64)
            total[rows] += proba
            counts[rows] += 1
    scored = counts > 0
    if not scored.all():
        print(f"warning: {int((~scored).sum())} cell(s) could not be read and have no out-of-fold probability")
    rows = [row for row, ok in zip(manifest.rows, scored) if ok]
    proba = total[scored] / counts[scored, None]
    return OutOfFold([r["path"] for r in rows], [r["group"] for r in rows], [r["label"] for r in rows],
                     [int(r["fold"]) for r in rows], list(classes), proba)
