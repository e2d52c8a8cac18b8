"""Train/validation/test splits and k folds that keep patients apart.

A *unit* is what may never be cut in two: by default all cells of one
slide/subject/patient together with every byte-identical copy of any of them
(so a duplicated image cannot leak across either).  scikit-learn's
``StratifiedGroupKFold`` assigns whole units while keeping class proportions.
Splitting by cell, as the seed studies did, puts cells of one patient on both
sides; cellscreen only writes such a split when asked to, and labels it leaky
in the manifest, its metadata and its printed summary.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from cellscreen.data.index import DatasetIndex, ImageRecord
from cellscreen.errors import UserError
from cellscreen.files import atomic_write

__all__ = ["SplitManifest", "group_folds", "make_split", "read_manifest", "describe_split", "records_in_manifest",
           "manifest_settings", "settle_setting", "few_groups", "MIN_GROUPS"]

# below this many patients/slides in a part, its intervals rest on too few of them to mean much
MIN_GROUPS = 5

SUBSETS = ("train", "val", "test")


@dataclasses.dataclass
class SplitManifest:
    """Rows of (path, label, group, subset-or-fold) plus how they were made."""

    rows: list[dict[str, str]]
    meta: dict

    @property
    def column(self) -> str:
        return "fold" if self.meta["method"] == "kfold" else "subset"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        fields = ["path", "label", "group", self.column] + (["leaky"] if self.meta["leaky"] else [])
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({**row, "leaky": "true"} if self.meta["leaky"] else row)
        return buffer.getvalue()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_csv().encode()).hexdigest()

    def write(self, path: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
        """Write ``path`` (CSV) and its metadata beside it (``.json``); refuse to
        replace existing files unless ``overwrite``."""
        path = Path(path)
        meta_path = path.with_suffix(".json")
        for target in (path, meta_path):
            if target.exists() and not overwrite:
                raise UserError(f"{target} already exists; pass --overwrite to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, self.to_csv())
        atomic_write(meta_path, json.dumps({**self.meta, "manifest_sha256": self.sha256}, indent=2) + "\n")
        return path, meta_path


def _units(records: list[ImageRecord], by: str) -> np.ndarray:
    """Union-find over files: same group (when splitting by group) or same bytes."""
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[str, int] = {}
    keys = [("sha", r.sha256) for r in records]
    if by == "group":
        keys += [("group", r.group) for r in records]
    for position, key in enumerate(keys):
        i = position % len(records)
        if key in first_seen:
            parent[find(i)] = find(first_seen[key])
        else:
            first_seen[key] = i
    return np.array([find(i) for i in range(len(records))])


def group_folds(labels: np.ndarray, units: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Fold number for each file; whole units per fold, classes stratified."""
    n_units = len(np.unique(units))
    if n_units < n_splits:
        raise UserError(f"only {n_units} independent groups: too few for {n_splits} parts; use fewer folds or larger fractions")
    largest = int(np.unique(labels, return_counts=True)[1].max()) if len(labels) else 0
    if largest < n_splits:  # scikit-learn's own refusal, said as what to do
        raise UserError(f"only {largest} cells in the largest class: too few for {n_splits} parts; add cells, "
                        "use fewer folds or larger validation and test fractions")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    fold_of = np.empty(len(labels), dtype=int)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels, units)):
        fold_of[held_out] = fold
    return fold_of


def _holdout(labels: np.ndarray, units: np.ndarray, val: float, test: float, seed: int) -> np.ndarray:
    subset = np.zeros(len(labels), dtype=int)  # 0 train, 1 val, 2 test
    remaining = np.arange(len(labels))
    for code, fraction, share_left in ((2, test, 1.0), (1, val, 1.0 - test)):
        if fraction <= 0:
            continue
        n_splits = max(2, round(share_left / fraction))
        fold = group_folds(labels[remaining], units[remaining], n_splits, seed)
        chosen = remaining[fold == 0]
        subset[chosen] = code
        remaining = remaining[fold != 0]
    return subset


def make_split(
    index: DatasetIndex,
    *,
    method: str = "holdout",
    by: str = "group",
    val: float = 0.15,
    test: float = 0.15,
    folds: int = 5,
    seed: int = 0,
    allow_leakage: bool = False,
) -> SplitManifest:
    """Split an indexed dataset into a hold-out (train/val/test) or k folds.

    Fractions are met as closely as whole groups allow; the metadata records
    the fractions actually reached.  Identical inputs and seed give an
    identical manifest.
    """
    if method not in ("holdout", "kfold"):
        raise UserError(f"unknown split method {method!r}; use 'holdout' or 'kfold'")
    if by not in ("group", "cell"):
        raise UserError(f"unknown split unit {by!r}; use 'group' or 'cell'")
    if method == "holdout" and not (0 <= val < 1 and 0 <= test < 1 and 0 < val + test < 1):
        raise UserError(f"fractions val={val} and test={test} must be in [0, 1) and leave room for training")
    if method == "kfold" and folds < 2:
        raise UserError(f"--folds must be at least 2 (got {folds})")
    records = sorted(index.records, key=lambda r: r.path)
    present = sorted({r.label for r in records})
    if len(present) < 2:
        found = present[0] if present else "none"
        why = "".join(f"; {w}" for w in index.warnings if w.startswith("class folder"))
        raise UserError(f"cannot split {index.root}: it needs images of at least two classes (found: {found}){why}")

    labels = np.array([r.label for r in records])
    units = _units(records, by)
    if method == "kfold":
        assignment = group_folds(labels, units, folds, seed)
        names = [str(f) for f in range(folds)]
    else:
        assignment = _holdout(labels, units, val, test, seed)
        names = list(SUBSETS)
    rows = [
        {"path": r.path, "label": r.label, "group": r.group, ("fold" if method == "kfold" else "subset"): names[a]}
        for r, a in zip(records, assignment)
    ]
    leaks = _leaks(records, assignment)
    leaky = any(leaks.values())
    if leaky and not allow_leakage:
        raise UserError(
            f"this split puts {leaks['groups']} {index.profile.group_kind}(s) and {leaks['duplicates']} "
            "set(s) of identical images on more than one side, so test cells would share a patient with "
            "training cells; split by group instead, or pass --allow-leakage to write it labelled as leaky"
        )
    meta = {
        "dataset": index.profile.name,
        "root": str(index.root.resolve()),
        "method": method,
        "by": by,
        "group_kind": index.profile.group_kind,
        # how the folder was read, so that train and evaluate need not be told again (manifest_settings)
        "group_regex": index.profile.group_regex,
        "positive_class": index.profile.positive_class,
        **({"relabels": index.relabels} if index.relabels else {}),  # the relabel files that gave the labels
        "seed": seed,
        "leaky": leaky,
        "leaks": leaks,
        "requested": {"val": val, "test": test} if method == "holdout" else {"folds": folds},
        "counts": _counts(rows, "fold" if method == "kfold" else "subset"),
        "n_images": len(rows),
        "n_groups": len({r.group for r in records}),
        "n_skipped": len(index.skipped),
        "notes": _notes(index, by, leaky),
    }
    return SplitManifest(rows=rows, meta=meta)


def _leaks(records: list[ImageRecord], assignment: np.ndarray) -> dict[str, int]:
    sides_of_group: dict[str, set] = defaultdict(set)
    sides_of_bytes: dict[str, set] = defaultdict(set)
    for record, side in zip(records, assignment):
        sides_of_group[record.group].add(int(side))
        sides_of_bytes[record.sha256].add(int(side))
    return {
        "groups": sum(len(s) > 1 for s in sides_of_group.values()),
        "duplicates": sum(len(s) > 1 for s in sides_of_bytes.values()),
    }


def _counts(rows: list[dict[str, str]], column: str) -> dict[str, dict]:
    per_part: dict[str, Counter] = defaultdict(Counter)
    groups: dict[str, set] = defaultdict(set)
    for row in rows:
        per_part[row[column]][row["label"]] += 1
        groups[row[column]].add(row["group"])
    total = len(rows)
    return {
        part: {
            "images": sum(c.values()),
            "fraction": round(sum(c.values()) / total, 4),
            "groups": len(groups[part]),
            "per_class": dict(sorted(c.items())),
        }
        for part, c in sorted(per_part.items(), key=lambda kv: _part_order(kv[0]))
    }


def _part_order(part: str) -> int:
    return SUBSETS.index(part) if part in SUBSETS else len(SUBSETS) + int(part)


def _notes(index: DatasetIndex, by: str, leaky: bool) -> list[str]:
    notes = []
    if leaky:
        notes.append("LEAKY: cells of one patient/slide are on more than one side; results overstate accuracy.")
    elif by == "cell":
        notes.append("Split by cell; no group happened to span two sides.")
    if index.groups_from_duplicates:
        notes.append(
            "File names carry no patient id: only byte-identical files are kept together, "
            "so this split is not patient-disjoint."
        )
    return notes


def read_manifest(path: str | Path) -> SplitManifest:
    """Read a manifest written by ``SplitManifest.write`` (its ``.json`` beside it)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"split manifest {path} does not exist")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"path", "label", "group"} <= rows[0].keys():
        raise UserError(f"{path} is not a cellscreen split manifest (columns path, label, group, subset or fold)")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta.setdefault("method", "kfold" if "fold" in rows[0] else "holdout")
    meta.setdefault("leaky", "leaky" in rows[0])
    rows = [{k: v for k, v in row.items() if k != "leaky"} for row in rows]
    return SplitManifest(rows=rows, meta=meta)


def describe_split(manifest: SplitManifest) -> str:
    """What a fresh split holds, part by part, for the terminal."""
    meta = manifest.meta
    unit = "cell (LEAKY)" if meta["leaky"] else ("cell" if meta["by"] == "cell" else meta["group_kind"])
    lines = [f"{meta['dataset']}: {meta['n_images']:,} images, {meta['n_groups']:,} {meta['group_kind']}(s), "
             f"split by {unit}"]
    for part, counts in meta["counts"].items():
        per_class = ", ".join(f"{k} {v:,}" for k, v in counts["per_class"].items())
        lines.append(f"  {part:<6}{counts['images']:>7,} images ({counts['fraction']:.1%}), "
                     f"{counts['groups']:>5,} {meta['group_kind']}(s): {per_class}")
    if meta["n_skipped"]:
        lines.append(f"  skipped {meta['n_skipped']:,} file(s); `cellscreen data info` lists them with reasons")
    lines += [f"  note: {note}" for note in meta["notes"]]
    lines += [f"  warning: {warning}" for warning in few_groups(meta)]
    return "\n".join(lines)


def few_groups(meta: dict) -> list[str]:
    """A warning for each part of a split with fewer than ``MIN_GROUPS`` patients/slides."""
    kind = meta.get("group_kind", "group")
    return [f"the {part} part holds only {counts['groups']} {kind}(s): too few for its figures and their 95% "
            f"intervals to mean much; add {kind}s, or use k folds (--method kfold)"
            for part, counts in meta.get("counts", {}).items() if counts["groups"] < MIN_GROUPS]


def records_in_manifest(records: list[ImageRecord], path: str | Path) -> tuple[list[ImageRecord], int]:
    """The records a split manifest names, and how many of its files are missing or unreadable now."""
    wanted = {row["path"] for row in read_manifest(path).rows}
    kept = [r for r in records if r.path in wanted]
    return kept, len(wanted) - len(kept)


# what a split manifest records about how its folder was read, and the option that gives each
RECORDED = {"dataset": "--dataset", "group_regex": "--group-regex", "positive_class": "--positive"}


def manifest_settings(path: str | Path) -> dict[str, str | None]:
    """The dataset profile, group pattern, positive class, folder and relabel files a split manifest was made
    with (None where it does not say: manifests from before they were recorded, or made without relabels)."""
    meta = read_manifest(path).meta
    return {"dataset": meta.get("dataset"), "group_regex": meta.get("group_regex"),
            "positive_class": meta.get("positive_class"), "root": meta.get("root"),
            "relabels": meta.get("relabels")}


def settle_setting(name: str, given, recorded, where: str, remedy: str = "make a new split"):
    """``given`` if nothing was recorded, else the ``recorded`` value; a ``given`` value that contradicts the
    recorded one is refused in one line (the option is said once, where the data is first read)."""
    if given is None or recorded is None or given == recorded:
        return recorded if given is None else given
    option = RECORDED.get(name, name)
    raise UserError(f"{option} {given} contradicts {where}, which says {recorded}; "
                    f"leave {option} out (it is taken from there) or {remedy}")
