"""Commands that measure a model: evaluate, and demo (the whole job on the NIH malaria cells, ending in a report)."""

from __future__ import annotations

from pathlib import Path

from cellscreen.cli.options import add_command, common_options, dataset_options, precision_option, print_metrics

__all__ = ["add_parsers"]


def cmd_evaluate(args) -> None:
    from cellscreen.evaluate.run import evaluate_checkpoint  # keeps start-up fast

    result = evaluate_checkpoint(args.model, dataset=args.dataset, out=args.out, data_dir=args.dir, data=args.data,
                                 split=args.split, subset=args.subset, fold=args.fold, group_regex=args.group_regex,
                                 positive=args.positive, n_boot=args.bootstrap, tta=args.tta, workers=args.workers,
                                 progress=not args.quiet,
                                 engine=args.engine, precision=args.precision, relabel=args.relabel or [])
    print(f"{result['metrics']['n']:,} cells from {result['n_groups']:,} {result['group_kind']}(s)")
    print_metrics(result)
    print(f"written: {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'report.md'}")


def cmd_threshold(args) -> None:
    from cellscreen.evaluate.decision import set_decision  # keeps start-up fast

    decision = set_decision(args.model, operating_point=args.operating_point, threshold=args.decision_threshold,
                            data=args.dir or args.data, workers=args.workers, progress=not args.quiet)
    chosen = decision["decision"]
    print(f"decision threshold {decision['decision_threshold']:.4f} written into {args.model}")
    if chosen["set_by"] == "validation cells":
        print(f"  chosen on {chosen['positive_cells'] + chosen['negative_cells']} validation cells for "
              f"{chosen['operating_point']}: sensitivity {chosen['sensitivity']:.3f}, specificity "
              f"{chosen['specificity']:.3f} there")


def cmd_demo(args) -> None:
    from cellscreen.demo import run_demo  # keeps start-up fast

    report = run_demo(out=args.out, data=args.data, epochs=args.epochs, progress=not args.quiet,
                      overwrite=args.overwrite)
    print(f"demo report: {report}")


def add_parsers(commands) -> None:
    """evaluate and demo."""
    p = add_command(commands, "evaluate", help="evaluate a checkpoint on a folder of class folders", examples=[
        "cellscreen evaluate runs/m1 --dataset malaria-nih --split runs/split.csv --subset test --out runs/m1/eval",
        "cellscreen evaluate runs/own --split runs/own-split.csv --subset test --out runs/own/eval"
        "     # your own folder: read as it was split",
        "cellscreen evaluate runs/m1.onnx -d malaria-nih --split runs/folds.csv --fold 0 --tta --out runs/eval-onnx"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Model")
    group.add_argument("model", metavar="MODEL", help="run folder, model.json, an exported .onnx file, "
                       "or a bundled name (malaria)")
    group.add_argument("--tta", action="store_true", help="average the 8 rotations/flips of each image")
    group.add_argument("--engine", choices=("torch", "onnx", "int8"), default=None,
                       help="what computes the probabilities: PyTorch, or the ONNX / 8-bit graph predict would "
                       "run (default: torch for a checkpoint, onnx for an .onnx file)")
    precision_option(group)
    group = p.add_argument_group("Dataset parameters")
    dataset_options(group)
    group.add_argument("--split", metavar="CSV", help="evaluate only part of this split manifest")
    group.add_argument("--subset", choices=["train", "val", "test"], help="with --split: which subset")
    group.add_argument("--fold", type=int, help="with a k-fold --split: which fold")
    group = p.add_argument_group("Output")
    group.add_argument("--out", required=True, metavar="DIR", help="folder for metrics.json, report.md and plots")
    group.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: no intervals)")
    p.set_defaults(func=cmd_evaluate)

    p = add_command(commands, "threshold", help="set a trained model's decision threshold, or choose it on its "
                    "validation cells for a target sensitivity or specificity", examples=[
                        "cellscreen threshold runs/own --operating-point sensitivity=0.98",
                        "cellscreen threshold runs/own --threshold 0.3",
                        "cellscreen threshold runs/ensemble --operating-point specificity=0.95"
                        "     # an ensemble: on the validation cells its members share"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Model and decision")
    group.add_argument("model", metavar="RUN", help="run folder (or its model.json) of a two-class model, or an "
                       "ensemble's folder")
    choice = group.add_mutually_exclusive_group(required=True)
    choice.add_argument("--operating-point", metavar="sensitivity=T|specificity=T",
                        help="choose the highest threshold that reaches this sensitivity (or the lowest for this "
                        "specificity) on the run's validation cells")
    choice.add_argument("--threshold", dest="decision_threshold", type=float, metavar="P",
                        help="call a cell positive from this probability of the positive class on")
    group.add_argument("dir", nargs="?", metavar="DIR", help="the dataset folder, if it moved since training")
    group.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    p.set_defaults(func=cmd_threshold)

    p = add_command(commands, "demo", help="split, train, evaluate and report on the NIH malaria cells", examples=[
        "cellscreen demo",
        "cellscreen demo --epochs 1 --out runs/demo-quick     # a quick look, lower accuracy",
        "cellscreen demo --data /mnt/cells --overwrite"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Demo parameters")
    group.add_argument("--out", default="runs/demo", metavar="DIR", help="folder for the run and the report")
    group.add_argument("--epochs", type=int, default=None, help="override the default recipe's epochs")
    group.add_argument("--overwrite", action="store_true", help="start again in an existing demo folder")
    p.set_defaults(func=cmd_demo)
