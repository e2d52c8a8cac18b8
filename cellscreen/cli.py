"""The ``cellscreen`` command: parses arguments and calls one library function per command.

Errors the user can fix (a missing folder, a leaky split, a file that would be
overwritten) are printed as one line and exit with status 2; a traceback means
a bug in cellscreen.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cellscreen import __version__
from cellscreen.cpu import keep_freed_memory
from cellscreen.errors import UserError
from cellscreen.files import atomic_write


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="DIR", help="data root (default: $CELLSCREEN_DATA, else ~/.cache/cellscreen/data)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def _interpolation_arg(parser: argparse.ArgumentParser) -> None:
    from cellscreen.data.images import DEFAULT_INTERPOLATION, INTERPOLATIONS

    parser.add_argument("--interpolation", choices=list(INTERPOLATIONS), default=DEFAULT_INTERPOLATION,
                        help="how images are shrunk: the resize new models train on (default) or the exact bicubic "
                        "of checkpoints from before it")


def _dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", metavar="DIR", help="dataset folder (default: found under the data root)")
    parser.add_argument("--dataset", "-d", default=None,
                        help="dataset profile (see `cellscreen datasets`; default: folder, or the checkpoint's)")
    parser.add_argument("--group-regex", metavar="REGEX", help="read the patient/slide id from file names with this pattern")
    parser.add_argument("--positive", metavar="CLASS", help="the positive class, for your own folder of classes")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")


def _precision_option(parser: argparse.ArgumentParser, more: str = "") -> None:
    parser.add_argument("--precision", choices=("32", "bf16"), default="32",
                        help="what a model run in PyTorch computes in: 32 (fp32), or bf16 (bf16 autocast: about "
                        "twice as fast on a CPU with bf16 units such as AMX, slower on one without; the class of "
                        "a few cells in ten thousand may differ)" + more)


def _write_new(path: Path, text: str, overwrite: bool) -> None:
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name for the report")
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)


def _index(args):
    from cellscreen.data.index import scan_dataset
    from cellscreen.data.sources import get_profile, resolve_dataset_dir

    profile = get_profile(args.dataset or "folder", group_regex=args.group_regex, positive_class=args.positive)
    root = resolve_dataset_dir(profile, args.dir, data=args.data)
    return scan_dataset(root, profile, workers=args.workers, progress=not args.quiet)


def cmd_datasets(args) -> None:
    from cellscreen.data.sources import PROFILES

    for profile in PROFILES.values():
        classes = ", ".join(profile.class_folders) or "(the sub-folders found)"
        print(f"{profile.name}\n  {profile.description}")
        print(f"  folder     {profile.folder}/{profile.layout}".rstrip("/") if profile.folder else "  folder     DIR")
        print(f"  classes    {classes}")
        if profile.class_map:
            print(f"  labels     {', '.join(profile.labels)}")
        print(f"  positive   {profile.positive_class or '(none: multi-class)'}")
        grouping = f"{profile.group_kind} from name, pattern {profile.group_regex}" if profile.group_regex else (
            "byte-identical files (no id in names)")
        print(f"  groups     {grouping}")
        if profile.border_crop:
            print(f"  crop       {profile.border_crop} px border")
        if profile.download:
            print(f"  download   {profile.download.url} ({profile.download.size / 1e6:.0f} MB)")
        if profile.notes:
            print(f"  note       {profile.notes}")


def cmd_fetch(args) -> None:
    from cellscreen.data.fetch import fetch_dataset
    from cellscreen.data.sources import get_profile, resolve_data_root

    profile = get_profile(args.name)
    root = fetch_dataset(
        profile,
        resolve_data_root(args.data),
        url=args.url,
        sha256=args.sha256,
        size=args.size,
        force=args.force,
        progress=not args.quiet,
    )
    print(f"{profile.name} is ready in {root}")


def cmd_info(args) -> None:
    from cellscreen.data.audit import audit_dataset, format_audit

    index = _index(args)
    audit = audit_dataset(index)
    out = Path(args.out or f"{index.profile.name}-info.json")
    _write_new(out, json.dumps(audit, indent=2) + "\n", args.overwrite)
    print(format_audit(audit))
    print(f"written: {out}")


def cmd_split(args) -> None:
    from cellscreen.data.splits import make_split

    index = _index(args)
    manifest = make_split(
        index,
        method=args.method,
        by=args.by,
        val=args.val,
        test=args.test,
        folds=args.folds,
        seed=args.seed,
        allow_leakage=args.allow_leakage,
    )
    csv_path, meta_path = manifest.write(args.out, overwrite=args.overwrite)
    meta = manifest.meta
    unit = "cell (LEAKY)" if meta["leaky"] else ("cell" if args.by == "cell" else meta["group_kind"])
    print(f"{meta['dataset']}: {meta['n_images']:,} images, {meta['n_groups']:,} {meta['group_kind']}(s), split by {unit}")
    for part, counts in meta["counts"].items():
        per_class = ", ".join(f"{k} {v:,}" for k, v in counts["per_class"].items())
        print(f"  {part:<6}{counts['images']:>7,} images ({counts['fraction']:.1%}), {counts['groups']:>5,} groups: {per_class}")
    if index.skipped:
        print(f"  skipped {len(index.skipped):,} file(s); `cellscreen data info` lists them with reasons")
    for note in meta["notes"]:
        print(f"  note: {note}")
    print(f"written: {csv_path} and {meta_path}")


def cmd_cache(args) -> None:
    from cellscreen.data.cache import CacheSpec, build_cache

    index = _index(args)
    records = index.records
    if args.manifest:
        from cellscreen.data.splits import read_manifest

        wanted = {row["path"] for row in read_manifest(args.manifest).rows}
        records = [r for r in records if r.path in wanted]
        missing = len(wanted) - len(records)
        if missing:
            print(f"  warning: {missing:,} manifest file(s) are missing or unreadable now")
    crop = index.profile.border_crop if args.crop is None else args.crop
    cache = build_cache(
        index.root,
        records,
        CacheSpec(size=args.size, border_crop=crop, interpolation=args.interpolation),
        cache_dir=args.cache_dir,
        workers=args.workers,
        progress=not args.quiet,
    )
    state = "built" if cache.built else "reused"
    rate = f", {len(records) / cache.seconds:,.0f} images/s" if cache.built and cache.seconds > 0 else ""
    print(
        f"{state} cache {cache.folder}: {len(cache.row_of):,} distinct images at "
        f"{args.size}x{args.size}, border crop {crop} px, in {cache.seconds:.1f} s{rate}"
    )
    skipped = len(index.skipped) + len(cache.skipped)
    if skipped:
        print(f"  skipped {skipped:,} file(s) that could not be read")


def cmd_models(args) -> None:
    from cellscreen.models import list_models, model_summary

    print(f"{'name':<20}{'params':>12}{'GFLOPs':>9}{'input':>7}  description")
    for name in list_models():
        m = model_summary(name)
        print(f"{name:<20}{m['params']:>12,}{m['flops'] / 1e9:>9.3f}{m['input_size']:>7}  {m['description']}")


def _train_config(args):
    from cellscreen.config import load_config

    names = ("dataset", "model", "epochs", "batch_size", "lr", "optimizer", "split", "fold", "seed", "input_size",
             "group_regex", "pretrained", "init_from", "trainable", "new_head", "freeze_bn")
    # flags a command does not have, and switches left off, leave the preset's value
    flags = {name: getattr(args, name, None) for name in names}
    flags = {name: None if value is False else value for name, value in flags.items()}
    return load_config(getattr(args, "preset", None), flags, args.set or [])


def cmd_train(args) -> None:
    from cellscreen.engine.train import train

    config = _train_config(args)
    result = train(config, out=args.out, data=args.dir or args.data, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.quiet, workers=args.workers, devices=args.devices, strategy=args.strategy,
                   num_nodes=args.num_nodes, accelerator=args.accelerator)
    if not result.primary:  # another process of a distributed run: the first one reports
        return
    print(f"trained {config.model} in {result.seconds / 60:.1f} min; best {config.monitor} "
          f"{result.best_metric:.4f} at epoch {result.best_epoch + 1}")
    print(f"checkpoint: {result.checkpoint}")
    _report_test(result.run, result.data, args.bootstrap)


def _report_test(run, data, n_boot: int) -> None:
    """Evaluate a fresh run on its split's test subset, if it has one."""
    if "test" in data.subsets:
        from cellscreen.evaluate.run import report_on_subset

        evaluation, report = report_on_subset(run, data.subsets["test"], profile=data.index.profile,
                                              root=data.index.root, out=Path(run) / "test", subset_name="test",
                                              skipped=len(data.index.skipped), n_boot=n_boot)
        _print_metrics(evaluation)
        print(f"test report: {report}")


def cmd_svm(args) -> None:
    from cellscreen.engine.svm import train_svm

    config = _train_config(args)
    run, data, seconds = train_svm(config, features=args.features, out=args.out, data=args.dir or args.data,
                                   C=args.C, overwrite=args.overwrite, progress=not args.quiet, workers=args.workers)
    print(f"fitted an SVM on {args.features} features in {seconds / 60:.1f} min; checkpoint: {run / 'model.json'}")
    _report_test(run, data, args.bootstrap)


def cmd_explain(args) -> None:
    from cellscreen.engine.checkpoint import load_checkpoint
    from cellscreen.explain import explain
    from cellscreen.serve.predict import list_inputs, prepare_image

    checkpoint = load_checkpoint(args.model)
    size, crop = checkpoint.data_config.input_size, checkpoint.border_crop
    images, names = [], set()
    for path, reason in list_inputs(args.images):
        picture = reason or prepare_image(path, size, crop, checkpoint.data_config.interpolation)
        if isinstance(picture, str):
            print(f"skipped {path}: {picture}")
            continue
        if len(images) == args.max_images:
            print(f"only the first {args.max_images} images are explained (--max-images)")
            break
        name = path.stem
        while name in names:  # same stem in two folders
            name += "_"
        names.add(name)
        images.append((name, picture))
    if not images:
        raise UserError("no readable images to explain")
    index = explain(checkpoint, images, args.out, filters=not args.no_filters)
    print(f"explained {len(images)} image(s): {index}")


def cmd_compare(args) -> None:
    from cellscreen.compare.run import parse_entries, run_comparison

    entries = parse_entries(args.entries)
    if args.by == "cell" and not args.allow_leakage:
        raise UserError("a cell-level split puts cells of one patient on both sides; pass --allow-leakage to "
                        "reproduce the studies' protocol anyway (every figure is then marked LEAKY)")
    report = run_comparison(entries, dataset=args.dataset, out=args.out, data=args.data,
                            protocol=args.protocol, folds=args.folds, seed=args.seed, by=args.by,
                            allow_leakage=args.allow_leakage, group_regex=args.group_regex, settings=args.set or [],
                            n_boot=args.bootstrap, workers=args.workers, progress=not args.quiet)
    print(f"report: {report} (and {report.with_suffix('.md')})")


def cmd_ensemble(args) -> None:
    from cellscreen.engine.ensemble import make_ensemble

    path = make_ensemble(args.runs, args.out, overwrite=args.overwrite)
    print(f"ensemble of {len(args.runs)} models: {path}")


def _print_metrics(result: dict) -> None:
    m, ci = result["metrics"], result.get("intervals", {})
    for name in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "mcc", "roc_auc"):
        interval = f"  (95% CI {ci[name][0]:.4f}-{ci[name][1]:.4f})" if name in ci else ""
        print(f"  {name:<18}{m[name]:.4f}{interval}")


def cmd_evaluate(args) -> None:
    from cellscreen.evaluate.run import evaluate_checkpoint

    result = evaluate_checkpoint(args.model, dataset=args.dataset, out=args.out, data_dir=args.dir, data=args.data,
                                 split=args.split, subset=args.subset, fold=args.fold, group_regex=args.group_regex,
                                 n_boot=args.bootstrap, tta=args.tta, workers=args.workers, progress=not args.quiet,
                                 engine=args.engine, precision=args.precision)
    print(f"{result['metrics']['n']:,} cells from {result['n_groups']:,} {result['group_kind']}(s)")
    _print_metrics(result)
    print(f"written: {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'report.md'}")


def cmd_predict(args) -> None:
    from cellscreen.serve.predict import parse_shard, predict_files

    counts = predict_files(args.model, args.inputs, args.out, batch_size=args.batch_size, tta=args.tta,
                           overwrite=args.overwrite, resume=args.resume, shard=parse_shard(args.shard),
                           engine=args.engine, workers=args.workers, progress=not args.quiet,
                           ray_address=args.ray_address, precision=args.precision)
    resumed = f" (continued after {counts['resumed']:,} rows of the interrupted run)" if counts["resumed"] else ""
    print(f"predicted {counts['predicted']:,} image(s), skipped {counts['skipped']:,} (reasons in the file)"
          f"{resumed}: {args.out}")


def cmd_merge(args) -> None:
    from cellscreen.serve.predict import merge_predictions

    counts = merge_predictions(args.parts, args.out, overwrite=args.overwrite)
    print(f"merged {len(args.parts)} shard(s): {counts['rows']:,} rows ({counts['predicted']:,} predicted, "
          f"{counts['skipped']:,} skipped): {args.out}")


def cmd_export(args) -> None:
    from cellscreen.serve.export import export_model

    report = export_model(args.model, args.out, fmt=args.format, check_data=args.check_data,
                          overwrite=args.overwrite)
    agreement = f", same class for {report.agreement:.2%}" if report.agreement is not None else ""
    print(f"parity with PyTorch: max probability difference {report.max_difference:.2e}{agreement} "
          f"on {report.checked_on}")
    print(f"written: {report.path} and {report.description}")


def cmd_serve(args) -> None:
    from cellscreen.serve.app import Limits, serve

    limits = Limits(max_files=args.max_files, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                    max_pixels=args.max_pixels)
    serve(args.model, host=args.host, port=args.port, engine=args.engine, limits=limits,
          max_batch=args.max_batch, log_level="warning" if args.quiet else "info", precision=args.precision)


def cmd_bench(args) -> None:
    import torch

    from cellscreen import benchmarks as bench

    if args.threads:
        torch.set_num_threads(args.threads)
    what = args.bench_command
    if what == "ceiling":
        records = [bench.ceiling(seconds=args.seconds, matmul_size=args.matmul_size, conv_batch=args.conv_batch,
                                 conv_channels=args.conv_channels, conv_size=args.conv_size)]
    elif what == "cache":
        records = [bench.cache_build(args.dataset, data=args.data, size=args.size, limit=args.limit,
                                     workers=args.workers, interpolation=args.interpolation)]
    elif what == "train":
        records = [bench.train_throughput(args.model, size=args.size, batch_size=args.batch_size,
                                          precision=args.precision, channels_last=args.channels_last,
                                          steps=args.steps, warmup=args.warmup, preset=args.preset,
                                          settings=args.set or [], ceiling_gflops=args.ceiling,
                                          compiled=args.compile)]
    elif what == "infer":
        records = bench.infer_throughput(args.model, size=args.size, batch_size=args.batch_size,
                                         variants=args.variants, seconds=args.seconds, ceiling_gflops=args.ceiling)
    elif what == "time-to-accuracy":
        overrides = {"dataset": args.dataset, "split": args.split, "fold": args.fold, "epochs": args.epochs,
                     "train_limit": args.limit}
        records = [bench.time_to_accuracy(args.target, preset=args.preset, overrides=overrides,
                                          settings=args.set or [], data=args.data, out=args.out,
                                          overwrite=args.overwrite, progress=not args.quiet, workers=args.workers)]
    else:
        records = [bench.compare_reference(data=args.data, split=args.split, fold=args.fold, epochs=args.epochs,
                                           limit=args.limit, dataset=args.dataset, size=args.size,
                                           batch_size=args.batch_size, reference_python=args.reference_python,
                                           reference_script=args.reference_script, predict_limit=args.predict_limit,
                                           predict_engine=args.predict_engine, default_recipe=args.default_recipe, progress=not args.quiet,
                                           workers=args.workers)]
    for record in records:
        print(json.dumps(record), flush=True)


def cmd_demo(args) -> None:
    from cellscreen.demo import run_demo

    report = run_demo(out=args.out, data=args.data, epochs=args.epochs, progress=not args.quiet,
                      overwrite=args.overwrite)
    print(f"demo report: {report}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellscreen", description="Screen blood-cell images with deep learning.")
    parser.add_argument("--version", action="version", version=f"cellscreen {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("datasets", help="list the known datasets")
    _common(p)
    p.set_defaults(func=cmd_datasets)

    data = commands.add_parser("data", help="download and inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    p = data_commands.add_parser("fetch", help="download an official dataset into the data root")
    _common(p)
    p.add_argument("name", help="dataset profile, e.g. malaria-nih")
    p.add_argument("--url", help="download from this mirror instead")
    p.add_argument("--sha256", help="expected sha256 (default: the recorded one)")
    p.add_argument("--size", type=int, help="expected size in bytes (default: the recorded one)")
    p.add_argument("--force", action="store_true", help="download and replace even if present")
    p.set_defaults(func=cmd_fetch)

    p = data_commands.add_parser("info", help="count, measure and audit a dataset folder")
    _common(p)
    _dataset_args(p)
    p.add_argument("--out", metavar="FILE", help="JSON report (default: DATASET-info.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.set_defaults(func=cmd_info)

    p = commands.add_parser("split", help="write a leakage-free split manifest")
    _common(p)
    _dataset_args(p)
    p.add_argument("--out", required=True, metavar="CSV", help="manifest to write (metadata goes beside it as .json)")
    p.add_argument("--method", choices=["holdout", "kfold"], default="holdout")
    p.add_argument("--by", choices=["group", "cell"], default="group", help="unit kept on one side (default: group)")
    p.add_argument("--val", type=float, default=0.15, help="validation fraction (hold-out)")
    p.add_argument("--test", type=float, default=0.15, help="test fraction (hold-out)")
    p.add_argument("--folds", type=int, default=5, help="number of folds (k-fold)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-leakage", action="store_true", help="write a split that puts a group on two sides")
    p.add_argument("--overwrite", action="store_true", help="replace an existing manifest")
    p.set_defaults(func=cmd_split)

    p = commands.add_parser("cache", help="decode, crop and resize images once into the cache")
    _common(p)
    _dataset_args(p)
    p.add_argument("--size", type=int, default=128, help="side of the cached square images in pixels")
    p.add_argument("--crop", type=int, default=None, help="border crop in pixels (default: the dataset's)")
    _interpolation_arg(p)
    p.add_argument("--manifest", metavar="CSV", help="cache only the files of this split manifest")
    p.add_argument("--cache-dir", metavar="DIR", help="cache folder (default: $CELLSCREEN_CACHE, else ~/.cache/cellscreen/cache)")
    p.set_defaults(func=cmd_cache)

    p = commands.add_parser("models", help="list the registered models with params and FLOPs")
    p.set_defaults(func=cmd_models)

    p = commands.add_parser("train", help="train a model on a dataset split")
    _common(p)
    _dataset_args(p)
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to create")
    p.add_argument("--preset", help="settings preset (default, seed_malaria_cnn, seed_allnet) or a YAML file")
    p.add_argument("--model", help="registered model name (see `cellscreen models`)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    p.add_argument("--input-size", type=int, help="input side in pixels (default: the model's)")
    p.add_argument("--pretrained", metavar="FILE|URL|imagenet",
                   help="start from these weights (torchvision/timm state dict; 'imagenet' reads the library cache)")
    p.add_argument("--init-from", metavar="RUN", help="start from a cellscreen run or checkpoint (its model and size)")
    p.add_argument("--new-head", action="store_true",
                   help="replace the classifier by global average pooling, dropout and dense (see head_hidden)")
    p.add_argument("--trainable", metavar="all|head|topN", help="what trains: everything, the head only, or the top "
                   "N blocks and the head")
    p.add_argument("--freeze-bn", action="store_true", help="keep batch-norm statistics fixed while fine-tuning")
    p.add_argument("--split", metavar="CSV", help="a split manifest (default: a fresh 70/15/15 split by group)")
    p.add_argument("--fold", type=int, help="with a k-fold manifest: the test fold")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override any setting (repeatable)")
    p.add_argument("--devices", default=1, help="processes/GPUs per node (Lightning), e.g. 2 with --strategy ddp")
    p.add_argument("--strategy", default="auto", help="Lightning strategy: auto, ddp, fsdp, ...")
    p.add_argument("--num-nodes", type=int, default=1, help="machines (launched by torchrun or SLURM)")
    p.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, ...")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in RUN")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the test intervals")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("svm", help="fit an SVM baseline on hand-crafted or deep features")
    _common(p)
    _dataset_args(p)
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to create")
    p.add_argument("--features", default="handcrafted", metavar="handcrafted|RUN|MODEL",
                   help="hand-crafted colour/HOG/LBP features, or the pooled features of a trained run or a "
                   "registered model (with --pretrained)")
    p.add_argument("--pretrained", metavar="FILE|URL|imagenet", help="weights for a registered feature network")
    p.add_argument("--input-size", type=int, help="image side for hand-crafted features (default 64) or a "
                   "registered feature network")
    p.add_argument("--C", type=float, default=10.0, help="SVM regularisation (default 10)")
    p.add_argument("--split", metavar="CSV", help="a split manifest (default: a fresh 70/15/15 split by group)")
    p.add_argument("--fold", type=int, help="with a k-fold manifest: the test fold")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a setting, e.g. test=0.2")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the test intervals")
    p.set_defaults(func=cmd_svm)

    p = commands.add_parser("explain", help="feature maps, strongest channels, filters and Grad-CAM of a model")
    p.add_argument("model", metavar="CHECKPOINT", help="run folder, model.json, or a bundled name (malaria)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the pictures and index.html")
    p.add_argument("--max-images", type=int, default=16, help="explain at most this many images (default 16)")
    p.add_argument("--no-filters", action="store_true", help="skip the (slower) filter visualisation")
    p.set_defaults(func=cmd_explain)

    p = commands.add_parser("compare", help="train and evaluate several models/recipes on the same folds, "
                            "with one HTML report")
    _common(p)  # the dataset folder comes with --data: ENTRY... takes the positional arguments
    p.add_argument("--dataset", "-d", required=True, help="dataset profile (see `cellscreen datasets`)")
    p.add_argument("--group-regex", metavar="REGEX", help="read the patient/slide id from file names with this pattern")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    p.add_argument("entries", nargs="+", metavar="ENTRY", help="a preset (seed_malaria_cnn), a model trained with "
                   "the default recipe (resnet18), or MODEL@PRESET")
    p.add_argument("--out", required=True, metavar="DIR", help="comparison folder (rerun to resume it)")
    p.add_argument("--protocol", choices=["kfold", "holdout"], default="kfold")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--by", choices=["group", "cell"], default="group", help="split unit (default: patient/slide)")
    p.add_argument("--allow-leakage", action="store_true", help="permit --by cell (figures are marked LEAKY)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="a setting for every entry (repeatable)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.set_defaults(func=cmd_compare)

    p = commands.add_parser("ensemble", help="average the probabilities of several trained models")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders, checkpoints or bundled names")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the ensemble")
    p.add_argument("--overwrite", action="store_true", help="replace an existing ensemble folder")
    p.set_defaults(func=cmd_ensemble)

    p = commands.add_parser("evaluate", help="evaluate a checkpoint on a folder of class folders")
    _common(p)
    p.add_argument("model", metavar="MODEL", help="run folder, model.json, an exported .onnx file, "
                   "or a bundled name (malaria)")
    _dataset_args(p)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--split", metavar="CSV", help="evaluate only part of this split manifest")
    p.add_argument("--subset", choices=["train", "val", "test"], help="with --split: which subset")
    p.add_argument("--fold", type=int, help="with a k-fold --split: which fold")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: no intervals)")
    p.add_argument("--tta", action="store_true", help="average the 8 rotations/flips of each image")
    p.add_argument("--engine", choices=("torch", "onnx", "int8"), default=None,
                   help="what computes the probabilities: PyTorch, or the ONNX / 8-bit graph predict would run "
                   "(default: torch for a checkpoint, onnx for an .onnx file)")
    _precision_option(p)
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("predict", help="predict the class of image files or folders into a CSV or Parquet file")
    _common(p)
    p.add_argument("model", metavar="MODEL", help="run folder, model.json, .onnx file, or a bundled name (malaria)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, metavar="FILE", help="results, .csv or .parquet")
    p.add_argument("--engine", choices=("auto", "torch", "onnx", "int8", "ray"), default="auto",
                   help="auto: onnxruntime for networks, PyTorch for SVMs and ensembles; int8: the model's 8-bit "
                   "graph (model.int8.onnx, see export --format onnx-int8); ray: spread a network's "
                   "inference over a Ray cluster with Ray Data (pip install 'cellscreen[ray]')")
    p.add_argument("--ray-address", metavar="ADDRESS", help="with --engine ray: the cluster to run on, e.g. auto or "
                   "ray://head:10001 (default: $RAY_ADDRESS, else a local Ray instance); its workers read the "
                   "inputs by absolute path, so they must be on storage every node mounts at the same path")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--tta", action="store_true", help="average the 8 rotations/flips of each image")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core); an "
                   "onnxruntime model also runs in them, one thread each (0: everything in this process); with "
                   "--engine ray: inference actors (default: one per CPU of the cluster)")
    _precision_option(p, "; with bf16, --engine auto runs networks in PyTorch too")
    p.add_argument("--shard", metavar="i/N", help="only this shard of the inputs (merge with `cellscreen merge`)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --out")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser("merge", help="join the outputs of predict --shard i/N into one file")
    _common(p)
    p.add_argument("parts", nargs="+", metavar="PART", help="the N shard outputs")
    p.add_argument("--out", required=True, metavar="FILE", help=".csv or .parquet")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_merge)

    p = commands.add_parser("export", help="export a model to ONNX or TorchScript, checked against PyTorch")
    _common(p)
    p.add_argument("model", metavar="MODEL", help="run folder, model.json, or a bundled name (malaria)")
    p.add_argument("--format", choices=("onnx", "onnx-int8", "torchscript"), default="onnx",
                   help="onnx-int8: 8-bit weights and activations, calibrated on --check-data cells")
    p.add_argument("--out", required=True, metavar="FILE", help="e.g. malaria.onnx (FILE.json describes it)")
    p.add_argument("--check-data", metavar="PATH", help="cells for the parity check (default: the model's "
                   "dataset if present, else random pixels)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("serve", help="an HTTP service and web page for a model")
    _common(p)
    p.add_argument("model", metavar="MODEL", help="run folder, model.json, .onnx file, or a bundled name (malaria)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--engine", choices=("auto", "torch", "onnx", "int8"), default="auto")
    _precision_option(p, "; with bf16, --engine auto runs networks in PyTorch too")
    p.add_argument("--max-files", type=int, default=256, help="images per request")
    p.add_argument("--max-upload-mb", type=float, default=32.0, help="size of one request")
    p.add_argument("--max-pixels", type=int, default=16_000_000, help="pixels of one image")
    p.add_argument("--max-batch", type=int, default=128, help="images the model runs at once across requests")
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("bench", help="measure speed (cache, training, inference, time to accuracy) against "
                            "the machine's ceiling and the Keras reference; one JSON object per line")
    bench_commands = p.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)
    q = bench_commands.add_parser("ceiling", help="the machine's fp32 and bf16 matmul and conv GFLOP/s")
    q.add_argument("--seconds", type=float, default=1.0, help="timing per probe, after a warm-up (default 1)")
    q.add_argument("--matmul-size", type=int, default=1024, help="side of the square matrices (default 1024)")
    q.add_argument("--conv-batch", type=int, default=32)
    q.add_argument("--conv-channels", type=int, default=64, help="input and output channels of the 3x3 conv")
    q.add_argument("--conv-size", type=int, default=56, help="side of the conv's feature map (default 56)")
    q = bench_commands.add_parser("cache", help="images/s of indexing a dataset and building its cache afresh")
    q.add_argument("--dataset", "-d", default="malaria-nih", help="dataset profile (default malaria-nih)")
    q.add_argument("--data", metavar="DIR", help="dataset folder or data root (default: $CELLSCREEN_DATA, else "
                   "~/.cache/cellscreen/data)")
    q.add_argument("--size", type=int, default=128, help="cached image side (default 128)")
    _interpolation_arg(q)
    q.add_argument("--limit", type=int, help="only a spread of N files, copied to a temporary folder first")
    q.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    q = bench_commands.add_parser("train", help="training-step images/s on synthetic batches")
    q.add_argument("--model", required=True, help="registered model name (see `cellscreen models`)")
    q.add_argument("--size", type=int, help="input side in pixels (default: the preset's, else the model's)")
    q.add_argument("--batch-size", type=int, help="default: the preset's")
    q.add_argument("--precision", choices=("auto", "32", "bf16-mixed"), help="default: the preset's")
    q.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="default: the preset's")
    q.add_argument("--compile", action="store_true", help="train through torch.compile (its first step, the "
                   "compilation, is timed apart)")
    q.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    q.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    q.add_argument("--preset", default="default", help="optimiser and loss settings from this preset")
    q.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a setting (repeatable)")
    q.add_argument("--ceiling", type=float, metavar="GFLOPS", help="the ceiling to compare with (default: a "
                   "0.3 s fp32 conv probe)")
    q = bench_commands.add_parser("infer", help="cells/s of a model per variant (eager, channels-last, bf16, "
                                  "torch.compile, onnxruntime)")
    q.add_argument("--model", required=True, help="registered model name (random weights), run folder, "
                   "model.json, .onnx file or a bundled name (malaria)")
    q.add_argument("--size", type=int, help="input side of a registered model (default: its own)")
    q.add_argument("--batch-size", type=int, default=256)
    q.add_argument("--variants", default="eager,channels_last,bf16,compile,onnx", help="comma-separated "
                   "(default: all of eager,channels_last,bf16,compile,onnx)")
    q.add_argument("--seconds", type=float, default=2.0, help="timing per variant (default 2)")
    q.add_argument("--ceiling", type=float, metavar="GFLOPS", help="the ceiling to compare with (default: a "
                   "0.3 s fp32 conv probe)")
    q = bench_commands.add_parser("time-to-accuracy", help="train and report the wall time until validation "
                                  "accuracy first reaches a target")
    q.add_argument("--target", type=float, required=True, help="validation accuracy, e.g. 0.95")
    q.add_argument("--preset", default="default", help="settings preset (default: cellscreen's default recipe)")
    q.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a setting (repeatable)")
    q.add_argument("--dataset", "-d", default=None, help="dataset profile (default: the preset's)")
    q.add_argument("--data", metavar="DIR", help="dataset folder or data root")
    q.add_argument("--split", metavar="CSV", help="a split manifest (default: a fresh 70/15/15 split by group)")
    q.add_argument("--fold", type=int, help="with a k-fold manifest: the test fold")
    q.add_argument("--epochs", type=int)
    q.add_argument("--limit", type=int, help="train on at most N training cells")
    q.add_argument("--out", metavar="RUN", help="keep the run folder here (default: a temporary one)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    q.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    q.add_argument("--quiet", "-q", action="store_true", help="no progress bars (they go to stderr)")
    q = bench_commands.add_parser("compare-reference", help="cellscreen against the Keras reference on one "
                                  "split: training and prediction, with ratios")
    q.add_argument("--data", metavar="DIR", help="dataset folder or data root")
    q.add_argument("--dataset", "-d", default="malaria-nih")
    q.add_argument("--split", required=True, metavar="CSV", help="a split manifest (k-fold: with --fold)")
    q.add_argument("--fold", type=int, help="with a k-fold manifest: the test fold")
    q.add_argument("--epochs", type=int, default=5, help="epochs for both (default 5)")
    q.add_argument("--limit", type=int, help="train both on at most N training cells")
    q.add_argument("--size", type=int, default=128, help="input side for both (default 128)")
    q.add_argument("--batch-size", type=int, default=16)
    q.add_argument("--reference-python", metavar="PY", default=None, help="Python with TensorFlow/Keras "
                   "(default: $CELLSCREEN_KERAS_PYTHON)")
    q.add_argument("--reference-script", metavar="FILE", help="default: bench/keras_reference.py")
    q.add_argument("--predict-limit", type=int, help="predict only a spread of N test cells")
    q.add_argument("--predict-engine", choices=("auto", "torch", "onnx", "int8"), default="auto",
                   help="engine of `cellscreen predict` (default auto: onnxruntime)")
    q.add_argument("--default-recipe", action="store_true", help="also train cellscreen's default recipe until "
                   "it reaches the reference's final validation accuracy")
    q.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    q.add_argument("--quiet", "-q", action="store_true", help="no progress bars (they go to stderr)")
    for q in bench_commands.choices.values():
        q.add_argument("--threads", type=int, help="torch and onnxruntime threads (default: torch's)")
        q.set_defaults(func=cmd_bench)

    p = commands.add_parser("demo", help="split, train, evaluate and report on the NIH malaria cells")
    _common(p)
    p.add_argument("--out", default="runs/demo", metavar="DIR")
    p.add_argument("--epochs", type=int, default=None, help="override the default recipe's epochs")
    p.add_argument("--overwrite", action="store_true", help="start again in an existing demo folder")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # every command frees and allocates large arrays (cellscreen/cpu.py); denormals are flushed by train(),
    # since importing PyTorch here would add about two seconds to commands that do not need it
    keep_freed_memory()
    try:
        args.func(args)
    except UserError as exc:
        print(f"cellscreen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cellscreen: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
