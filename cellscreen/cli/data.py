"""Commands that find, inspect, split and cache datasets: datasets, data fetch/info, split, cache, models."""

from __future__ import annotations

from pathlib import Path

from cellscreen.cli.options import (add_command, common_options, dataset_options, interpolation_option,
                                    scan_index)

__all__ = ["add_parsers"]


def cmd_datasets(args) -> None:
    from cellscreen.data.sources import PROFILES, describe_profile  # keeps start-up fast

    for profile in PROFILES.values():
        print(describe_profile(profile))


def cmd_fetch(args) -> None:
    from cellscreen.data.fetch import fetch_dataset  # keeps start-up fast
    from cellscreen.data.sources import get_profile, resolve_data_root

    profile = get_profile(args.name)
    root = fetch_dataset(profile, resolve_data_root(args.data), url=args.url, sha256=args.sha256, size=args.size,
                         force=args.force, progress=not args.quiet)
    print(f"{profile.name} is ready in {root}")


def cmd_info(args) -> None:
    from cellscreen.data.audit import audit_dataset, format_audit, write_audit  # keeps start-up fast

    index = scan_index(args)
    audit = audit_dataset(index)
    if index.relabels:
        audit["relabels"] = index.relabels
    out = write_audit(audit, args.out or f"{index.profile.name}-info.json", overwrite=args.overwrite)
    print(format_audit(audit))
    print_labels(index.relabels)
    print(f"written: {out}")


def cmd_split(args) -> None:
    from cellscreen.data.splits import describe_split, make_split  # keeps start-up fast

    manifest = make_split(scan_index(args), method=args.method, by=args.by, val=args.val, test=args.test,
                          folds=args.folds, seed=args.seed, allow_leakage=args.allow_leakage)
    csv_path, meta_path = manifest.write(args.out, overwrite=args.overwrite)
    print(describe_split(manifest))
    print_labels(manifest.meta.get("relabels"))
    print(f"written: {csv_path} and {meta_path}")


def print_labels(relabels: dict | None) -> None:
    """Which relabel files gave the labels, if any."""
    if relabels:
        from cellscreen.labels.applied import describe_relabels  # keeps start-up fast

        print(f"  labels: {describe_relabels(relabels)}")


def cmd_cache(args) -> None:
    from cellscreen.data.cache import CacheSpec, build_cache, describe_cache  # keeps start-up fast
    from cellscreen.data.splits import records_in_manifest

    index = scan_index(args)
    records, missing = records_in_manifest(index.records, args.manifest) if args.manifest else (index.records, 0)
    if missing:
        print(f"  warning: {missing:,} manifest file(s) are missing or unreadable now")
    crop = index.profile.border_crop if args.crop is None else args.crop
    spec = CacheSpec(size=args.size, border_crop=crop, interpolation=args.interpolation)
    cache = build_cache(index.root, records, spec, cache_dir=args.cache_dir, workers=args.workers,
                        progress=not args.quiet)
    print(describe_cache(cache, images=len(records)))
    skipped = len(index.skipped) + len(cache.skipped)
    if skipped:
        print(f"  skipped {skipped:,} file(s) that could not be read")


def cmd_models(args) -> None:
    from cellscreen.models import list_models, model_summary  # keeps start-up fast: imports PyTorch

    print(f"{'name':<20}{'params':>12}{'GFLOPs':>9}{'input':>7}  description")
    for name in list_models():
        m = model_summary(name)
        print(f"{name:<20}{m['params']:>12,}{m['flops'] / 1e9:>9.3f}{m['input_size']:>7}  {m['description']}")


def add_parsers(commands) -> None:
    """datasets, data (fetch, info), split, cache and models."""
    p = add_command(commands, "datasets", help="list the known datasets", examples=[
        "cellscreen datasets",
        "cellscreen data fetch malaria-nih     # then download one of them"])
    common_options(p.add_argument_group("Common options"))
    p.set_defaults(func=cmd_datasets)

    data = add_command(commands, "data", help="download and inspect datasets", examples=[
        "cellscreen data fetch malaria-nih",
        "cellscreen data info --dataset malaria-nih"])
    data_commands = data.add_subparsers(title="commands", dest="data_command", metavar="SUBCOMMAND", required=True)
    p = add_command(data_commands, "fetch", help="download an official dataset into the data root", examples=[
        "cellscreen data fetch malaria-nih",
        "cellscreen data fetch malaria-nih --data /mnt/cells     # into another data root",
        "cellscreen data fetch malaria-nih --force               # download again and replace"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Download parameters")
    group.add_argument("name", help="dataset profile, e.g. malaria-nih")
    group.add_argument("--url", help="download from this mirror instead")
    group.add_argument("--sha256", help="expected sha256 (default: the recorded one)")
    group.add_argument("--size", type=int, help="expected size in bytes (default: the recorded one)")
    group.add_argument("--force", action="store_true", help="download and replace even if present")
    p.set_defaults(func=cmd_fetch)

    p = add_command(data_commands, "info", help="count, measure and audit a dataset folder", examples=[
        "cellscreen data info --dataset malaria-nih",
        "cellscreen data info ~/cells --group-regex '^(P\\d+)_' --positive infected     # your own folder of "
        "class folders",
        "cellscreen data info -d taleqani --overwrite"])
    common_options(p.add_argument_group("Common options"))
    dataset_options(p.add_argument_group("Dataset parameters"))
    group = p.add_argument_group("Output")
    group.add_argument("--out", metavar="FILE", help="JSON report (default: DATASET-info.json)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.set_defaults(func=cmd_info)

    p = add_command(commands, "split", help="write a leakage-free split manifest", examples=[
        "cellscreen split --dataset malaria-nih --out runs/split.csv",
        "cellscreen split -d malaria-nih --method kfold --folds 5 --out runs/folds.csv",
        "cellscreen split ~/cells --group-regex '^(P\\d+)_' --positive infected --out runs/own-split.csv"
        "     # your own folder of class folders"])
    common_options(p.add_argument_group("Common options"))
    dataset_options(p.add_argument_group("Dataset parameters"))
    group = p.add_argument_group("Split parameters")
    group.add_argument("--method", choices=["holdout", "kfold"], default="holdout",
                       help="one train/val/test hold-out, or k folds")
    group.add_argument("--by", choices=["group", "cell"], default="group",
                       help="unit kept on one side (default: group)")
    group.add_argument("--val", type=float, default=0.15, help="validation fraction (hold-out)")
    group.add_argument("--test", type=float, default=0.15, help="test fraction (hold-out)")
    group.add_argument("--folds", type=int, default=5, help="number of folds (k-fold)")
    group.add_argument("--seed", type=int, default=0, help="random seed of the assignment to parts")
    group.add_argument("--allow-leakage", action="store_true", help="write a split that puts a group on two sides")
    group = p.add_argument_group("Output")
    group.add_argument("--out", required=True, metavar="CSV",
                       help="manifest to write (metadata goes beside it as .json)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing manifest")
    p.set_defaults(func=cmd_split)

    p = add_command(commands, "cache", help="decode, crop and resize images once into the cache", examples=[
        "cellscreen cache --dataset malaria-nih --size 128",
        "cellscreen cache -d malaria-nih --size 96 --manifest runs/split.csv",
        "cellscreen cache ~/cells/my-folder --size 64 --crop 0 --cache-dir /scratch/cache"])
    common_options(p.add_argument_group("Common options"))
    dataset_options(p.add_argument_group("Dataset parameters"))
    group = p.add_argument_group("Cache parameters")
    group.add_argument("--size", type=int, default=128, help="side of the cached square images in pixels")
    group.add_argument("--crop", type=int, default=None, help="border crop in pixels (default: the dataset's)")
    interpolation_option(group)
    group.add_argument("--manifest", metavar="CSV", help="cache only the files of this split manifest")
    group.add_argument("--cache-dir", metavar="DIR",
                       help="cache folder (default: $CELLSCREEN_CACHE, else ~/.cache/cellscreen/cache)")
    p.set_defaults(func=cmd_cache)

    p = add_command(commands, "models", help="list the registered models with params and FLOPs", examples=[
        "cellscreen models",
        "cellscreen train --dataset malaria-nih --model resnet10t --out runs/r10t     # then train one of them"])
    p.set_defaults(func=cmd_models)
