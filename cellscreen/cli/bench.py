"""``cellscreen bench``: one sub-command per benchmark of ``cellscreen.benchmarks``, each printing JSON lines."""

from __future__ import annotations

import argparse
import json

from cellscreen.cli.options import add_command, interpolation_option, list_presets_text

__all__ = ["add_parsers"]


def _print_records(records: list[dict]) -> None:
    for record in records:
        print(json.dumps(record), flush=True)


def _set_threads(args) -> None:
    if args.threads:
        import torch  # keeps start-up fast

        torch.set_num_threads(args.threads)


def cmd_ceiling(args) -> None:
    from cellscreen.benchmarks import ceiling  # keeps start-up fast

    _set_threads(args)
    _print_records([ceiling(seconds=args.seconds, matmul_size=args.matmul_size, conv_batch=args.conv_batch,
                            conv_channels=args.conv_channels, conv_size=args.conv_size)])


def cmd_cache(args) -> None:
    from cellscreen.benchmarks import cache_build  # keeps start-up fast

    _set_threads(args)
    _print_records([cache_build(args.dataset, data=args.data, size=args.size, limit=args.limit,
                                workers=args.workers, interpolation=args.interpolation)])


def cmd_train(args) -> None:
    from cellscreen.benchmarks import train_throughput  # keeps start-up fast

    _set_threads(args)
    _print_records([train_throughput(args.model, size=args.size, batch_size=args.batch_size,
                                     precision=args.precision, channels_last=args.channels_last, steps=args.steps,
                                     warmup=args.warmup, preset=args.preset, settings=args.set or [],
                                     ceiling_gflops=args.ceiling, compiled=args.compile)])


def cmd_infer(args) -> None:
    from cellscreen.benchmarks import infer_throughput  # keeps start-up fast

    _set_threads(args)
    _print_records(infer_throughput(args.model, size=args.size, batch_size=args.batch_size, variants=args.variants,
                                    seconds=args.seconds, ceiling_gflops=args.ceiling))


def cmd_time_to_accuracy(args) -> None:
    from cellscreen.benchmarks import time_to_accuracy  # keeps start-up fast

    _set_threads(args)
    overrides = {"dataset": args.dataset, "split": args.split, "fold": args.fold, "epochs": args.epochs,
                 "train_limit": args.limit}
    _print_records([time_to_accuracy(args.target, preset=args.preset, overrides=overrides, settings=args.set or [],
                                     data=args.data, out=args.out, overwrite=args.overwrite,
                                     progress=not args.quiet, workers=args.workers)])


def cmd_compare_reference(args) -> None:
    from cellscreen.benchmarks import compare_reference  # keeps start-up fast

    _set_threads(args)
    _print_records([compare_reference(data=args.data, split=args.split, fold=args.fold, epochs=args.epochs,
                                      limit=args.limit, dataset=args.dataset, size=args.size,
                                      batch_size=args.batch_size, reference_python=args.reference_python,
                                      reference_script=args.reference_script, predict_limit=args.predict_limit,
                                      predict_engine=args.predict_engine, default_recipe=args.default_recipe,
                                      progress=not args.quiet, workers=args.workers)])


def _machine_options(p: argparse.ArgumentParser):
    """The group every benchmark has, with --threads; a few add --workers to it."""
    group = p.add_argument_group("Machine")
    group.add_argument("--threads", type=int, help="torch and onnxruntime threads (default: torch's)")
    return group


def _ceiling_option(group) -> None:
    group.add_argument("--ceiling", type=float, metavar="GFLOPS", help="the ceiling to compare with (default: a "
                       "0.3 s fp32 conv probe)")


def add_parsers(commands) -> None:
    """bench and its sub-commands: ceiling, cache, train, infer, time-to-accuracy, compare-reference."""
    p = add_command(commands, "bench", help="measure speed (cache, training, inference, time to accuracy) against "
                    "the machine's ceiling and the Keras reference; one JSON object per line", examples=[
                        "cellscreen bench ceiling",
                        "cellscreen bench infer --model malaria --threads 4",
                        "cellscreen bench train --model compact_cnn6sc --steps 10"])
    bench_commands = p.add_subparsers(title="commands", dest="bench_command", metavar="SUBCOMMAND", required=True)

    q = add_command(bench_commands, "ceiling", help="the machine's fp32 and bf16 matmul and conv GFLOP/s", examples=[
        "cellscreen bench ceiling",
        "cellscreen bench ceiling --seconds 3 --threads 1     # one core, longer timing"])
    group = q.add_argument_group("Probes")
    group.add_argument("--seconds", type=float, default=1.0, help="timing per probe, after a warm-up (default: 1)")
    group.add_argument("--matmul-size", type=int, default=1024, help="side of the square matrices (default: 1024)")
    group.add_argument("--conv-batch", type=int, default=32, help="images in the conv's batch")
    group.add_argument("--conv-channels", type=int, default=64, help="input and output channels of the 3x3 conv")
    group.add_argument("--conv-size", type=int, default=56, help="side of the conv's feature map (default: 56)")
    _machine_options(q)
    q.set_defaults(func=cmd_ceiling)

    q = add_command(bench_commands, "cache", help="images/s of indexing a dataset and building its cache afresh",
                    examples=[
                        "cellscreen bench cache --dataset malaria-nih --limit 2000",
                        "cellscreen bench cache -d malaria-nih --size 96 --workers 2"])
    group = q.add_argument_group("Dataset and cache")
    group.add_argument("--dataset", "-d", default="malaria-nih", help="dataset profile (default: malaria-nih)")
    group.add_argument("--data", metavar="DIR", help="dataset folder or data root (default: $CELLSCREEN_DATA, "
                       "else ~/.cache/cellscreen/data)")
    group.add_argument("--size", type=int, default=128, help="cached image side (default: 128)")
    interpolation_option(group)
    group.add_argument("--limit", type=int, help="only a spread of N files, copied to a temporary folder first")
    group = _machine_options(q)
    group.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    q.set_defaults(func=cmd_cache)

    q = add_command(bench_commands, "train", help="training-step images/s on synthetic batches", examples=[
        "cellscreen bench train --model compact_cnn6sc",
        "cellscreen bench train --model resnet18 --size 96 --batch-size 64 --precision bf16-mixed",
        "cellscreen bench train --model compact_cnn6sc --compile --steps 50 --threads 8"])
    group = q.add_argument_group("Model and step")
    group.add_argument("--model", required=True, help="registered model name (see `cellscreen models`)")
    group.add_argument("--size", type=int, help="input side in pixels (default: the preset's, else the model's)")
    group.add_argument("--batch-size", type=int, help="default: the preset's")
    group.add_argument("--precision", choices=("auto", "32", "bf16-mixed"), help="default: the preset's")
    group.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                       help="default: the preset's")
    group.add_argument("--compile", action="store_true", help="train through torch.compile (its first step, the "
                       "compilation, is timed apart)")
    group.add_argument("--preset", default="default", help="optimiser and loss settings from this preset: "
                       + list_presets_text())
    group.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a setting (repeatable)")
    group = q.add_argument_group("Timing")
    group.add_argument("--steps", type=int, default=20, help="timed steps (default: 20)")
    group.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    _ceiling_option(group)
    _machine_options(q)
    q.set_defaults(func=cmd_train)

    q = add_command(bench_commands, "infer", help="cells/s of a model per variant (eager, channels-last, bf16, "
                    "torch.compile, onnxruntime)", examples=[
                        "cellscreen bench infer --model malaria",
                        "cellscreen bench infer --model resnet18 --size 96 --variants eager,onnx --seconds 5"])
    group = q.add_argument_group("Model")
    group.add_argument("--model", required=True, help="registered model name (random weights), run folder, "
                       "model.json, .onnx file or a bundled name (malaria)")
    group.add_argument("--size", type=int, help="input side of a registered model (default: its own)")
    group.add_argument("--batch-size", type=int, default=256, help="cells per call of the model")
    group.add_argument("--variants", default="eager,channels_last,bf16,compile,onnx", help="comma-separated "
                       "(default: all of eager,channels_last,bf16,compile,onnx)")
    group = q.add_argument_group("Timing")
    group.add_argument("--seconds", type=float, default=2.0, help="timing per variant (default: 2)")
    _ceiling_option(group)
    _machine_options(q)
    q.set_defaults(func=cmd_infer)

    _add_time_to_accuracy(bench_commands)
    _add_compare_reference(bench_commands)


def _add_time_to_accuracy(bench_commands) -> None:
    q = add_command(bench_commands, "time-to-accuracy", help="train and report the wall time until validation "
                    "accuracy first reaches a target", examples=[
                        "cellscreen bench time-to-accuracy --target 0.95 --dataset malaria-nih",
                        "cellscreen bench time-to-accuracy --target 0.9 --preset seed_malaria_cnn "
                        "--split runs/split.csv --epochs 10 --out runs/tta"])
    group = q.add_argument_group("Recipe")
    group.add_argument("--target", type=float, required=True, help="validation accuracy, e.g. 0.95")
    group.add_argument("--preset", default="default", help="settings preset (default: cellscreen's default "
                       "recipe); presets: " + list_presets_text())
    group.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a setting (repeatable)")
    group.add_argument("--epochs", type=int, help="at most this many epochs (default: the preset's)")
    group = q.add_argument_group("Dataset parameters")
    group.add_argument("--dataset", "-d", default=None, help="dataset profile (default: the preset's)")
    group.add_argument("--data", metavar="DIR", help="dataset folder or data root")
    group.add_argument("--split", metavar="CSV", help="a split manifest (default: a fresh 70/15/15 split by group)")
    group.add_argument("--fold", type=int, help="with a k-fold manifest: the test fold")
    group.add_argument("--limit", type=int, help="train on at most N training cells")
    group = q.add_argument_group("Output")
    group.add_argument("--out", metavar="RUN", help="keep the run folder here (default: a temporary one)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    group.add_argument("--quiet", "-q", action="store_true", help="no progress bars (they go to stderr)")
    group = _machine_options(q)
    group.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    q.set_defaults(func=cmd_time_to_accuracy)


def _add_compare_reference(bench_commands) -> None:
    q = add_command(bench_commands, "compare-reference", help="cellscreen against the Keras reference on one "
                    "split: training and prediction, with ratios", examples=[
                        "cellscreen bench compare-reference --split runs/split.csv "
                        "--reference-python ~/keras-env/bin/python",
                        "cellscreen bench compare-reference --split runs/folds.csv --fold 0 --epochs 2 --limit 2000",
                        "cellscreen bench compare-reference --split runs/split.csv --default-recipe --threads 4"])
    group = q.add_argument_group("Dataset parameters")
    group.add_argument("--data", metavar="DIR", help="dataset folder or data root")
    group.add_argument("--dataset", "-d", default="malaria-nih", help="dataset profile")
    group.add_argument("--split", required=True, metavar="CSV", help="a split manifest (k-fold: with --fold)")
    group.add_argument("--fold", type=int, help="with a k-fold manifest: the test fold")
    group.add_argument("--limit", type=int, help="train both on at most N training cells")
    group = q.add_argument_group("Training and prediction")
    group.add_argument("--epochs", type=int, default=5, help="epochs for both (default: 5)")
    group.add_argument("--size", type=int, default=128, help="input side for both (default: 128)")
    group.add_argument("--batch-size", type=int, default=16, help="cells per training step, for both")
    group.add_argument("--predict-limit", type=int, help="predict only a spread of N test cells")
    group.add_argument("--predict-engine", choices=("auto", "torch", "onnx", "int8"), default="auto",
                       help="engine of `cellscreen predict` (default: auto, onnxruntime)")
    group.add_argument("--default-recipe", action="store_true", help="also train cellscreen's default recipe until "
                       "it reaches the reference's final validation accuracy")
    group = q.add_argument_group("Keras reference")
    group.add_argument("--reference-python", metavar="PY", default=None, help="Python with TensorFlow/Keras "
                       "(default: $CELLSCREEN_KERAS_PYTHON)")
    group.add_argument("--reference-script", metavar="FILE", help="default: keras_reference.py, shipped in "
                       "cellscreen/benchmarks")
    group = q.add_argument_group("Output")
    group.add_argument("--quiet", "-q", action="store_true", help="no progress bars (they go to stderr)")
    group = _machine_options(q)
    group.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    q.set_defaults(func=cmd_compare_reference)
