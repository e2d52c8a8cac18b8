"""From a dataset folder and a split to in-memory training tensors.

index -> split manifest (a saved one, or a fresh hold-out by group) ->
cache at the model's input size -> uint8 tensors per subset.  Cached pixels
for one subset fit in memory easily (11,785 malaria cells at 64 px: 145 MB).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from cellscreen.data.cache import CacheSpec, ImageCache, build_cache
from cellscreen.data.index import DatasetIndex, scan_dataset
from cellscreen.data.sources import DatasetProfile, get_profile, resolve_dataset_dir
from cellscreen.data.splits import SplitManifest, group_folds, make_split, read_manifest, settle_setting
from cellscreen.errors import UserError
from cellscreen.labels.applied import relabel_index, settle_relabels
from cellscreen.labels.relabel import EXCLUDE, Relabels

__all__ = ["Subset", "PreparedData", "class_order", "prepare_data", "load_subset", "subset_rows"]


@dataclasses.dataclass
class Subset:
    """Pixels, targets and where they came from, for one side of a split."""

    images: torch.Tensor  # (N, 3, H, W) uint8
    targets: torch.Tensor  # (N,) int64
    paths: list[str]
    groups: list[str]

    def __len__(self) -> int:
        return len(self.paths)


@dataclasses.dataclass
class PreparedData:
    index: DatasetIndex
    manifest: SplitManifest
    classes: list[str]
    cache: ImageCache
    subsets: dict[str, Subset]  # "train", "val" and (if the split has one) "test"
    relabels: Relabels | None = None  # the relabel files that gave the labels (None: the folder's)


def class_order(profile: DatasetProfile, present: list[str]) -> list[str]:
    """Class names in model output order; for binary tasks the positive class is index 1."""
    labels = [label for label in profile.labels if label in present]
    if profile.positive_class in labels and len(labels) == 2:
        labels.remove(profile.positive_class)
        labels.append(profile.positive_class)
    return labels


def subset_rows(manifest: SplitManifest, fold: int | None, val_seed: int = 0) -> dict[str, list[dict]]:
    """Rows per subset; with k folds, fold ``fold`` tests and a seventh of the other
    folds' groups validates (for choosing the checkpoint), the rest trains."""
    if manifest.column == "subset":
        if fold is not None:
            raise UserError("--fold only applies to a k-fold manifest (made with `cellscreen split --method kfold`)")
        parts = {"train": [], "val": [], "test": []}
        for row in manifest.rows:
            parts[row["subset"]].append(row)
        return {k: v for k, v in parts.items() if v}
    folds = sorted({int(row["fold"]) for row in manifest.rows})
    if fold is None or fold not in folds:
        raise UserError(f"a k-fold manifest needs --fold, one of {', '.join(map(str, folds))}")
    test = [row for row in manifest.rows if int(row["fold"]) == fold]
    rest = [row for row in manifest.rows if int(row["fold"]) != fold]
    # validation: about 1/7 of the remaining groups, whole groups, stratified
    labels = np.array([row["label"] for row in rest])
    groups = np.array([row["group"] for row in rest])
    parts = min(7, len(set(groups.tolist())))  # fewer groups than 7 (a small set): one of them validates
    if parts < 2:
        raise UserError("the training folds hold only one group: too few to set some aside for validation")
    is_val = group_folds(labels, groups, n_splits=parts, seed=val_seed) == 0
    return {"train": [r for r, v in zip(rest, is_val) if not v], "val": [r for r, v in zip(rest, is_val) if v],
            "test": test}


def load_subset(cache: ImageCache, rows: list[dict], sha256_of: dict[str, str], classes: list[str]) -> Subset:
    """Gather one subset's cached pixels; rows whose file is gone or unreadable are left out."""
    class_index = {c: i for i, c in enumerate(classes)}
    keep = [r for r in rows if sha256_of.get(r["path"]) in cache and r["label"] in class_index]
    cache_rows = np.array([cache.row_of[sha256_of[r["path"]]] for r in keep], dtype=np.int64)
    order = np.argsort(cache_rows, kind="stable")  # read the memory map front to back
    pixels = np.empty((len(keep), *cache.images.shape[1:]), dtype=np.uint8)
    if len(keep):
        pixels[order] = cache.images[cache_rows[order]]
    return Subset(
        images=torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(),
        targets=torch.tensor([class_index[r["label"]] for r in keep], dtype=torch.int64),
        paths=[r["path"] for r in keep],
        groups=[r["group"] for r in keep],
    )


def prepare_data(config, *, data: str | None, input_size: int, interpolation: str, workers: int | None = None,
                 progress: bool = True) -> PreparedData:
    """The run's split, its cache at ``input_size`` resized by ``interpolation`` (the model's: see
    ``images.INTERPOLATIONS``) and its subsets."""
    manifest = read_manifest(config.split) if config.split else None
    if manifest is not None:  # the manifest says how its folder was read: given once, at the split
        group_regex, positive_class = (settle_setting(name, getattr(config, name, None), manifest.meta.get(name),
                                                      config.split) for name in ("group_regex", "positive_class"))
    else:
        group_regex, positive_class = config.group_regex, getattr(config, "positive_class", None)
    relabel = getattr(config, "relabel", None) or []
    if manifest is not None:  # the manifest's relabel files, or the same ones given again
        relabel = settle_relabels(relabel, manifest.meta.get("relabels"), config.split)
    profile = get_profile(config.dataset, group_regex=group_regex, positive_class=positive_class)
    root = resolve_dataset_dir(profile, data)
    index, relabels = relabel_index(scan_dataset(root, profile, workers=workers, progress=progress), relabel)
    if manifest is not None:
        if manifest.meta.get("leaky"):
            print(f"warning: {config.split} is a LEAKY split (cells of one patient on several sides)")
    else:
        manifest = make_split(index, val=config.val, test=config.test, seed=config.split_seed)
    if relabels is not None and not manifest.meta.get("relabels"):  # a split of the folder's labels, relabelled
        manifest = _relabelled_manifest(manifest, index, relabels)
    parts = subset_rows(manifest, config.fold, val_seed=config.split_seed)
    if not parts.get("train") or not parts.get("val"):
        raise UserError("the split needs both a training and a validation subset")
    limit = getattr(config, "train_limit", None)
    if limit and len(parts["train"]) > limit:  # a smaller, class-stratified sample of the training cells
        parts["train"], _ = train_test_split(parts["train"], train_size=limit, random_state=config.seed,
                                             stratify=[row["label"] for row in parts["train"]])
    classes = class_order(index.profile, sorted({r.label for r in index.records}))
    if len(classes) < 2:
        raise UserError(f"training needs at least two classes with images; found {classes}")
    decided = getattr(config, "operating_point", None) or getattr(config, "decision_threshold", None)
    if decided and (len(classes) != 2 or index.profile.positive_class not in classes):
        raise UserError("a decision threshold or operating point needs two classes and a positive one: "
                        "pass --positive CLASS (to split or train)")
    wanted = {row["path"] for rows in parts.values() for row in rows}
    records = [r for r in index.records if r.path in wanted]
    missing = len(wanted) - len(records)
    if missing:
        print(f"warning: {missing} file(s) of the split are missing or unreadable and are left out")
    spec = CacheSpec(size=input_size, border_crop=index.profile.border_crop, interpolation=interpolation)
    cache = build_cache(root, records, spec, workers=workers, progress=progress)
    sha256_of = {r.path: r.sha256 for r in records}
    subsets = {name: load_subset(cache, rows, sha256_of, classes) for name, rows in parts.items()}
    for name in ("train", "val"):
        if not len(subsets[name]):
            raise UserError(f"the {name} subset has no readable images ({len(parts[name])} listed in the split); "
                            "see `cellscreen data info` for the unreadable files")
    return PreparedData(index=index, manifest=manifest, classes=classes, cache=cache, subsets=subsets,
                        relabels=relabels)


def _relabelled_manifest(manifest: SplitManifest, index: DatasetIndex, relabels: Relabels) -> SplitManifest:
    """A split made from the folder's labels, with the labels of the relabelled ``index`` (its excluded cells
    left out) and its relabel files recorded: the groups stay where the split put them."""
    label_of = {r.path: r.label for r in index.records}
    excluded = {path for path, label in relabels.labels.items() if label == EXCLUDE}
    rows = [{**row, "label": label_of.get(row["path"], row["label"])} for row in manifest.rows
            if row["path"] not in excluded]
    return SplitManifest(rows=rows, meta={**manifest.meta, "relabels": index.relabels})


def manifest_copy(manifest: SplitManifest, out: Path) -> str:
    """Write the split used into the run folder; return its hash."""
    manifest.write(out / "split.csv", overwrite=True)
    return manifest.sha256
