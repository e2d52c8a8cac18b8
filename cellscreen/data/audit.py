"""What is in a dataset folder: counts, groups, sizes, bad files, duplicates."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from cellscreen.data.index import DatasetIndex
from cellscreen.errors import UserError
from cellscreen.files import atomic_write

__all__ = ["audit_dataset", "format_audit", "write_audit"]


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": min(values),
        "median": statistics.median(values),
        "mean": round(statistics.fmean(values), 1),
        "max": max(values),
    }


def audit_dataset(index: DatasetIndex) -> dict:
    """A JSON-ready summary of an indexed dataset."""
    records = index.records
    by_bytes: dict[str, list] = defaultdict(list)
    for record in records:
        by_bytes[record.sha256].append(record)
    duplicate_sets = [
        {
            "sha256": digest,
            "paths": [r.path for r in members],
            "labels": sorted({r.label for r in members}),
            "across_classes": len({r.label for r in members}) > 1,
        }
        for digest, members in sorted(by_bytes.items())
        if len(members) > 1
    ]
    groups_per_class = defaultdict(set)
    for record in records:
        groups_per_class[record.label].add(record.group)
    reasons = Counter(s.reason for s in index.skipped)
    return {
        "dataset": index.profile.name,
        "root": str(index.root),
        "files": index.n_files,
        "images": len(records),
        "skipped": len(index.skipped),
        "classes": index.class_counts(),
        "positive_class": index.profile.positive_class,
        "group_kind": index.profile.group_kind,
        "groups": len({r.group for r in records}),
        "groups_per_class": {label: len(groups_per_class[label]) for label in index.profile.labels},
        "groups_from_duplicates": index.groups_from_duplicates,
        "width": _stats([r.width for r in records]),
        "height": _stats([r.height for r in records]),
        "modes": dict(Counter(r.mode for r in records).most_common()),
        "formats": dict(Counter(r.format for r in records).most_common()),
        "skipped_reasons": dict(reasons.most_common()),
        "skipped_files": [{"path": s.path, "reason": s.reason} for s in index.skipped],
        "duplicates": {
            "sets": len(duplicate_sets),
            "extra_copies": sum(len(d["paths"]) - 1 for d in duplicate_sets),
            "within_class_sets": sum(not d["across_classes"] for d in duplicate_sets),
            "across_class_sets": sum(d["across_classes"] for d in duplicate_sets),
            "list": duplicate_sets,
        },
        "warnings": index.warnings,
        "notes": index.profile.notes,
    }


def format_audit(audit: dict, *, max_listed: int = 10) -> str:
    """The audit as a short plain-text report for the terminal."""
    lines = [
        f"{audit['dataset']}: {audit['root']}",
        f"  files found   {audit['files']:,} = {audit['images']:,} images + {audit['skipped']:,} skipped",
    ]
    for label, count in audit["classes"].items():
        positive = " (positive)" if label == audit["positive_class"] else ""
        groups = audit["groups_per_class"].get(label, 0)
        lines.append(f"  {label:<14}{count:>7,} images from {groups:,} {audit['group_kind']}(s){positive}")
    lines.append(f"  {audit['group_kind']}s total {audit['groups']:,}")
    if audit["width"]:
        w, h = audit["width"], audit["height"]
        lines.append(
            f"  size (px)     width {w['min']}-{w['max']} (median {w['median']}), "
            f"height {h['min']}-{h['max']} (median {h['median']})"
        )
        lines.append("  modes         " + ", ".join(f"{m} {n:,}" for m, n in audit["modes"].items()))
    dup = audit["duplicates"]
    lines.append(
        f"  duplicates    {dup['sets']} set(s) of byte-identical files "
        f"({dup['within_class_sets']} within a class, {dup['across_class_sets']} across classes)"
    )
    for entry in [d for d in dup["list"] if d["across_classes"]][:max_listed]:
        lines.append(f"    across classes: {', '.join(entry['paths'])}")
    if audit["skipped"]:
        lines.append("  skipped:")
        for reason, count in audit["skipped_reasons"].items():
            lines.append(f"    {count:>6,}  {reason}")
        for entry in audit["skipped_files"][:max_listed]:
            lines.append(f"    {entry['path']}: {entry['reason']}")
        if audit["skipped"] > max_listed:
            lines.append(f"    ... {audit['skipped'] - max_listed:,} more in the JSON report")
    for warning in audit["warnings"]:
        lines.append(f"  warning: {warning}")
    if audit["notes"]:
        lines.append(f"  note: {audit['notes']}")
    return "\n".join(lines)


def write_audit(audit: dict, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the audit as JSON to ``path``; refuse a folder, and an existing file unless ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name for the report")
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(audit, indent=2) + "\n")
    return path
