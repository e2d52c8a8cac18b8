"""Commands that make models and look inside them: train, svm, ensemble, compare, explain."""

from __future__ import annotations

from pathlib import Path

from cellscreen.cli.options import (add_command, common_options, data_folder, dataset_options, list_presets_text,
                                    print_metrics, relabel_option, train_config)

__all__ = ["CAM_METHODS", "add_parsers"]

# explain's CAM_METHODS, written out so that --help does not import PyTorch (a test checks they agree)
CAM_METHODS = ("gradcam", "layercam", "hirescam", "gradcam++", "xgradcam", "eigencam")


def report_test(run, data, n_boot: int) -> None:
    """Evaluate a fresh run on its split's test subset, if it has one."""
    if "test" in data.subsets:
        from cellscreen.evaluate.run import report_on_subset  # keeps start-up fast

        evaluation, report = report_on_subset(run, data.subsets["test"], profile=data.index.profile,
                                              root=data.index.root, out=Path(run) / "test", subset_name="test",
                                              skipped=len(data.index.skipped), n_boot=n_boot, relabels=data.relabels)
        print_metrics(evaluation)
        print(f"test report: {report}")


def cmd_train(args) -> None:
    from cellscreen.engine.train import train  # keeps start-up fast

    config = train_config(args)
    result = train(config, out=args.out, data=data_folder(args), resume=args.resume, overwrite=args.overwrite,
                   progress=not args.quiet, workers=args.workers, devices=args.devices, strategy=args.strategy,
                   num_nodes=args.num_nodes, accelerator=args.accelerator)
    if not result.primary:  # another process of a distributed run: the first one reports
        return
    print(f"trained {config.model} in {result.seconds / 60:.1f} min; best {config.monitor} "
          f"{result.best_metric:.4f} at epoch {result.best_epoch + 1}")
    print(f"checkpoint: {result.checkpoint}")
    print_decision(result.checkpoint)
    report_test(result.run, result.data, args.bootstrap)


def print_decision(checkpoint: Path) -> None:
    """The decision threshold a run chose on its validation cells, what it reached there, and how sure that is."""
    import json  # only here

    decision = json.loads(Path(checkpoint).read_text()).get("decision") or {}
    if decision.get("set_by") != "validation cells":
        return
    print(f"decision threshold {decision['threshold']:.4f}, chosen on the validation cells for "
          f"{decision['operating_point']}: sensitivity {decision['sensitivity']:.3f}, specificity "
          f"{decision['specificity']:.3f} there")
    if decision["positive_cells"] < 100:
        print(f"  note: set on {decision['positive_cells']} positive validation cells; on new cells the "
              "sensitivity may well be lower (evaluate on the test part to see)")


def cmd_svm(args) -> None:
    from cellscreen.engine.svm import train_svm  # keeps start-up fast

    run, data, seconds = train_svm(train_config(args), features=args.features, out=args.out,
                                   data=data_folder(args), C=args.C, overwrite=args.overwrite,
                                   progress=not args.quiet, workers=args.workers)
    print(f"fitted an SVM on {args.features} features in {seconds / 60:.1f} min; checkpoint: {run / 'model.json'}")
    report_test(run, data, args.bootstrap)


def cmd_ensemble(args) -> None:
    import json  # only here
    import shutil

    from cellscreen.engine.ensemble import make_ensemble, member_thresholds  # keeps start-up fast
    from cellscreen.errors import UserError

    path = make_ensemble(args.runs, args.out, overwrite=args.overwrite, decision_threshold=args.decision_threshold,
                         need_validation=args.operating_point is not None)
    if args.operating_point is not None:
        from cellscreen.evaluate.decision import set_decision  # keeps start-up fast

        try:
            set_decision(path, operating_point=args.operating_point, data=args.data, workers=args.workers,
                         progress=not args.quiet)
        except (UserError, KeyboardInterrupt):
            shutil.rmtree(path.parent)  # an ensemble without the decision asked for is not left behind
            raise
    print(f"ensemble of {len(args.runs)} models: {path}")
    threshold = json.loads(path.read_text()).get("decision_threshold")
    if threshold is None:
        own = sorted({t for t in member_thresholds(path) if t is not None})
        if own:
            print(f"note: members had their own decision thresholds ({', '.join(f'{t:.4f}' for t in own)}); the "
                  "ensemble calls its averaged probability at 0.5 until you set one (--operating-point or "
                  "`cellscreen threshold`)")
    elif args.operating_point is None:
        print(f"decision threshold {threshold:.4f} (given)")
    print_decision(path)


def cmd_compare(args) -> None:
    from cellscreen.compare.run import parse_entries, run_comparison  # keeps start-up fast

    report = run_comparison(parse_entries(args.entries), dataset=args.dataset, out=args.out, data=args.data,
                            protocol=args.protocol, folds=args.folds, seed=args.seed, by=args.by,
                            allow_leakage=args.allow_leakage, group_regex=args.group_regex, settings=args.set or [],
                            n_boot=args.bootstrap, workers=args.workers, progress=not args.quiet,
                            relabel=args.relabel or [])
    print(f"report: {report} (and {report.with_suffix('.md')})")


def cmd_explain(args) -> None:
    from cellscreen.engine.kinds import load_checkpoint  # keeps start-up fast
    from cellscreen.explain import explain, images_to_explain

    checkpoint = load_checkpoint(args.model)
    images, notes = images_to_explain(checkpoint, args.images, max_images=args.max_images)
    for note in notes:
        print(note)
    index = explain(checkpoint, images, args.out, filters=not args.no_filters, cam_method=args.cam_method)
    print(f"explained {len(images)} image(s): {index}")


def add_parsers(commands) -> None:
    """train, svm, explain, compare and ensemble."""
    _add_train(commands)
    _add_svm(commands)

    p = add_command(commands, "explain", help="where a model found its evidence (class activation maps), and "
                    "its feature maps, strongest channels and filters",
                    examples=[
                        "cellscreen explain malaria ~/cells/Parasitized --out runs/explain-malaria",
                        "cellscreen explain runs/m1 cell1.png cell2.png --cam-method layercam --no-filters "
                        "--out runs/m1/explain",
                        "cellscreen explain runs/m1/model.json ~/cells --max-images 4 --out runs/m1/explain4"])
    group = p.add_argument_group("Model and images")
    group.add_argument("model", metavar="CHECKPOINT", help="run folder, model.json, or a bundled name (malaria)")
    group.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    group.add_argument("--max-images", type=int, default=16, help="explain at most this many images (default: 16)")
    group.add_argument("--no-filters", action="store_true", help="skip the (slower) filter visualisation")
    group = p.add_argument_group("Class activation map")
    group.add_argument("--cam-method", choices=CAM_METHODS, default=None,
                       help="how the map of where the evidence lies is drawn (default: the model's own, Grad-CAM for "
                            "most models and LayerCAM for seed_allnet, whose Grad-CAM missed the parasite)")
    group = p.add_argument_group("Output")
    group.add_argument("--out", required=True, metavar="DIR", help="folder for the pictures and index.html")
    p.set_defaults(func=cmd_explain)

    p = add_command(commands, "compare", help="train and evaluate several models/recipes on the same folds, "
                    "with one HTML report", examples=[
                        "cellscreen compare -d malaria-nih seed_malaria_cnn compact_cnn6sc --out runs/compare",
                        "cellscreen compare -d malaria-nih resnet18@seed_allnet default --protocol holdout "
                        "--out runs/compare-holdout",
                        "cellscreen compare -d malaria-nih seed_malaria_cnn --folds 3 --set epochs=2 "
                        "--out runs/compare-quick"])
    group = p.add_argument_group("Common options")
    common_options(group)  # the dataset folder comes with --data: ENTRY... takes the positional arguments
    group = p.add_argument_group("Dataset parameters")
    group.add_argument("--dataset", "-d", required=True, help="dataset profile (see `cellscreen datasets`)")
    group.add_argument("--group-regex", metavar="REGEX",
                       help="read the patient/slide id from file names with this pattern")
    group.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    relabel_option(group)
    group = p.add_argument_group("Entries and protocol")
    group.add_argument("entries", nargs="+", metavar="ENTRY", help="a preset (seed_malaria_cnn), a model trained "
                       "with the default recipe (resnet18), or MODEL@PRESET; presets: " + list_presets_text())
    group.add_argument("--protocol", choices=["kfold", "holdout"], default="kfold",
                       help="k folds by group (every cell tested once), or one hold-out")
    group.add_argument("--folds", type=int, default=5, help="number of folds (kfold)")
    group.add_argument("--seed", type=int, default=0, help="random seed of the split and the training")
    group.add_argument("--by", choices=["group", "cell"], default="group",
                       help="split unit (default: patient/slide)")
    group.add_argument("--allow-leakage", action="store_true", help="permit --by cell (figures are marked LEAKY)")
    group.add_argument("--set", action="append", metavar="FIELD=VALUE",
                       help="a setting for every entry (repeatable)")
    group = p.add_argument_group("Output")
    group.add_argument("--out", required=True, metavar="DIR", help="comparison folder (rerun to resume it)")
    group.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.set_defaults(func=cmd_compare)

    p = add_command(commands, "ensemble", help="average the probabilities of several trained models", examples=[
        "cellscreen ensemble runs/m1 runs/m2 runs/m3 --out runs/ensemble",
        "cellscreen ensemble malaria runs/m1 --out runs/ensemble-bundled",
        "cellscreen ensemble runs/m1 runs/m2 --operating-point sensitivity=0.98 --out runs/ensemble-screen"
        "     # members trained on one split"])
    group = p.add_argument_group("Members")
    group.add_argument("runs", nargs="+", metavar="RUN", help="run folders, checkpoints or bundled names")
    group = p.add_argument_group("Decision (two classes with a positive class)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--operating-point", metavar="sensitivity=T|specificity=T",
                        help="choose the ensemble's decision threshold on the validation cells its members share "
                        "(members trained on one split) so that this sensitivity (or specificity) is reached "
                        "(default: threshold 0.5)")
    choice.add_argument("--threshold", dest="decision_threshold", type=float, metavar="P",
                        help="call a cell positive from this averaged probability of the positive class on "
                        "(default: 0.5)")
    group.add_argument("--data", metavar="DIR", help="with --operating-point: the dataset folder or data root, if "
                       "it moved since the members were trained")
    group.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    group.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    group = p.add_argument_group("Output")
    group.add_argument("--out", required=True, metavar="DIR", help="folder for the ensemble")
    group.add_argument("--overwrite", action="store_true", help="replace an existing ensemble folder")
    p.set_defaults(func=cmd_ensemble)


def _split_options(group) -> None:
    group.add_argument("--split", metavar="CSV", help="a split manifest (default: a fresh 70/15/15 split by group)")
    group.add_argument("--fold", type=int, help="with a k-fold manifest: the test fold")


def _add_train(commands) -> None:
    p = add_command(commands, "train", help="train a model on a dataset split", examples=[
        "cellscreen train --dataset malaria-nih --split runs/split.csv --out runs/m1",
        "cellscreen train -d malaria-nih --model resnet10t --input-size 64 --lr 0.001 --out runs/r10t",
        "cellscreen train --split runs/own-split.csv --operating-point sensitivity=0.98 --out runs/own"
        "     # your own folder, read as it was split; a threshold for 98% sensitivity"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Dataset parameters")
    dataset_options(group)
    _split_options(group)
    group = p.add_argument_group("Model parameters")
    group.add_argument("--preset", help="settings preset or a YAML file (default: default); presets: "
                       + list_presets_text())
    group.add_argument("--model", help="registered model name (see `cellscreen models`; default: the preset's)")
    group.add_argument("--input-size", type=int, help="input side in pixels (default: the model's)")
    group.add_argument("--pretrained", metavar="FILE|URL|imagenet", help="start from these weights "
                       "(torchvision/timm state dict; 'imagenet' reads the library cache)")
    group.add_argument("--init-from", metavar="RUN",
                       help="start from a cellscreen run or checkpoint (its model and size)")
    group.add_argument("--new-head", action="store_true",
                       help="replace the classifier by global average pooling, dropout and dense (see head_hidden)")
    group.add_argument("--trainable", metavar="all|head|topN", help="what trains: everything, the head only, or "
                       "the top N blocks and the head (default: the preset's)")
    group.add_argument("--freeze-bn", action="store_true", help="keep batch-norm statistics fixed while fine-tuning")
    group = p.add_argument_group("Training parameters")
    group.add_argument("--epochs", type=int, help="passes over the training cells (default: the preset's)")
    group.add_argument("--batch-size", type=int, help="cells per step (default: the preset's)")
    group.add_argument("--lr", type=float, help="peak learning rate (default: the preset's)")
    group.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], help="default: the preset's")
    group.add_argument("--seed", type=int, help="random seed of the training (default: the preset's)")
    group.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override any setting (repeatable)")
    group = p.add_argument_group("Decision (two classes with --positive)")
    group.add_argument("--operating-point", metavar="sensitivity=T|specificity=T",
                       help="choose the decision threshold on the validation cells so that this sensitivity (or "
                       "specificity) is reached, e.g. sensitivity=0.98 for a screen that must miss few infected "
                       "cells (default: threshold 0.5)")
    group.add_argument("--threshold", dest="decision_threshold", type=float, metavar="P",
                       help="call a cell positive from this probability of the positive class on (default: 0.5)")
    group = p.add_argument_group("Distributed training")
    group.add_argument("--devices", default=1, help="processes/GPUs per node (Lightning), e.g. 2 with --strategy ddp")
    group.add_argument("--strategy", default="auto", help="Lightning strategy: auto, ddp, fsdp, ...")
    group.add_argument("--num-nodes", type=int, default=1, help="machines (launched by torchrun or SLURM)")
    group.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, ...")
    group = p.add_argument_group("Output")
    group.add_argument("--out", required=True, metavar="RUN", help="run folder to create")
    group.add_argument("--resume", action="store_true", help="continue an interrupted run in RUN")
    group.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    group.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the test intervals")
    p.set_defaults(func=cmd_train)


def _add_svm(commands) -> None:
    p = add_command(commands, "svm", help="fit an SVM baseline on hand-crafted or deep features", examples=[
        "cellscreen svm --dataset malaria-nih --split runs/split.csv --out runs/svm",
        "cellscreen svm -d malaria-nih --split runs/split.csv --features runs/m1 --out runs/svm-deep",
        "cellscreen svm -d malaria-nih --features resnet18 --pretrained imagenet --C 1 --out runs/svm-r18"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Dataset parameters")
    dataset_options(group)
    _split_options(group)
    group = p.add_argument_group("Features and SVM")
    group.add_argument("--features", default="handcrafted", metavar="handcrafted|RUN|MODEL",
                       help="hand-crafted colour/HOG/LBP features, or the pooled features of a trained run or a "
                       "registered model (with --pretrained)")
    group.add_argument("--pretrained", metavar="FILE|URL|imagenet", help="weights for a registered feature network")
    group.add_argument("--input-size", type=int, help="image side for hand-crafted features (default: 64) or a "
                       "registered feature network")
    group.add_argument("--C", type=float, default=10.0, help="SVM regularisation (default: 10)")
    group.add_argument("--seed", type=int, help="random seed (default: the preset's)")
    group.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a setting, e.g. test=0.2")
    group = p.add_argument_group("Output")
    group.add_argument("--out", required=True, metavar="RUN", help="run folder to create")
    group.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    group.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the test intervals")
    p.set_defaults(func=cmd_svm)
