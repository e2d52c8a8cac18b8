"""Commands for whole smear fields: screen (find, classify and count every cell) and cells score (how well
cells are found, against annotations)."""

from __future__ import annotations

from cellscreen.cli.options import add_command, common_options

__all__ = ["add_parsers"]


def _sample_line(row: dict) -> str:
    """One sample of ``samples.csv`` as one line: counts, parasitemia with its interval, warnings."""
    share = (f"parasitemia {float(row['parasitemia_percent']):.2f}% (95% CI {float(row['ci_low']):.2f}-"
             f"{float(row['ci_high']):.2f})" if row["parasitemia_percent"] else "parasitemia -")
    skipped = f", {row['skipped']} skipped" if row["skipped"] != "0" else ""
    warnings = f"  [{row['warnings']}]" if row["warnings"] else ""
    if row.get("blasts"):  # the white cells were classified (--cells white)
        share = (f"blast share {float(row['blast_percent']):.2f}% (95% CI {float(row['blast_ci_low']):.2f}-"
                 f"{float(row['blast_ci_high']):.2f})" if row["blast_percent"] else "blast share -")
        return (f"{row['sample']}: {row['images']} image(s){skipped}, {int(row['white_counted']):,} white cells "
                f"counted, {int(row['blasts']):,} blasts, {share}, {int(row['red_counted']):,} red cells counted"
                f"{warnings}")
    return (f"{row['sample']}: {row['images']} image(s){skipped}, {int(row['red_counted']):,} red cells counted, "
            f"{int(row['positive']):,} positive, {share}, {int(row['flagged']):,} flagged, "
            f"{int(row['white']):,} white{warnings}")


def _print_run(out, totals: dict) -> None:
    import csv  # keeps start-up fast
    from pathlib import Path

    from cellscreen.screen.pipeline import REPORT, SAMPLES

    with (Path(out) / SAMPLES).open(newline="") as handle:
        for row in csv.DictReader(handle):
            print(_sample_line(row))
    resumed = f" (continued after {totals['resumed']:,} of an interrupted run)" if totals.get("resumed") else ""
    print(f"screened {totals['images']:,} image(s), skipped {totals['skipped']:,} (reasons in images.csv)"
          f"{resumed}: report {Path(out) / REPORT}")


def cmd_screen(args) -> None:
    from cellscreen.errors import UserError  # keeps start-up fast

    if args.merge:
        if args.model or args.model_option or args.inputs:
            raise UserError("--merge takes the shard folders only: give no MODEL or INPUT with it")
        from cellscreen.screen.shards import merge_screens  # keeps start-up fast

        totals = merge_screens(args.merge, args.out, overwrite=args.overwrite)
        print(f"merged {len(args.merge)} shard(s)")
        _print_run(args.out, totals)
        return
    inputs = list(args.inputs)
    if args.dataset:
        from cellscreen.data.sources import get_profile, resolve_fields_dir  # keeps start-up fast

        profile = get_profile(args.dataset)
        inputs.append(str(resolve_fields_dir(profile, None, data=args.data) / profile.fields.images))
    if args.model_option:  # `--model RUN`: every positional argument is an input
        inputs = [args.model] + inputs if args.model else inputs
        args.model = args.model_option
    if not args.model or not inputs:
        raise UserError("screen needs MODEL and at least one INPUT (image files or folders) or --dataset")
    from cellscreen.screen.pipeline import screen  # loads the cell finder; keeps start-up fast
    from cellscreen.serve.predict import parse_shard

    run, ray = screen, {}
    if args.engine == "ray":
        from cellscreen.screen.ray_engine import screen_on_ray  # Ray's actors screen the fields

        run, ray = screen_on_ray, {"ray_address": args.ray_address}
    elif args.ray_address:
        raise UserError("--ray-address goes with --engine ray")
    totals = run(args.model, inputs, args.out, cell_diameter=args.cell_diameter,
                 microns_per_pixel=args.microns_per_pixel, group_regex=args.group_regex, resume=args.resume,
                 overwrite=args.overwrite, workers=args.workers, progress=not args.quiet, engine=args.engine,
                 batch_size=args.batch_size, shard=parse_shard(args.shard), detector=args.detector, cells=args.cells,
                 blast_classes=args.blast_classes.split(",") if args.blast_classes else None, **ray)
    _print_run(args.out, totals)


def cmd_cells_score(args) -> None:
    from pathlib import Path  # keeps start-up fast

    from cellscreen.errors import UserError
    from cellscreen.screen.finding import score_finding

    if args.dataset:
        from cellscreen.data.sources import get_profile, resolve_fields_dir

        profile = get_profile(args.dataset)
        root = resolve_fields_dir(profile, args.fields, data=args.data)
        fields = profile.fields
        images, labels = root / fields.images, Path(args.labels) if args.labels else root / fields.labels
        label_format, kinds, complete = args.format or fields.format, fields.kinds, fields.complete
        border = args.border or fields.border
        what = f"{profile.name} ({images})"
    else:
        if not args.fields or not args.labels or not args.format:
            raise UserError("give FIELDS, --labels and --format, or --dataset (see `cellscreen datasets`)")
        images, labels, label_format, kinds, complete = Path(args.fields), Path(args.labels), args.format, None, ()
        border = args.border or "keep"
        what = str(images)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it")
    result = score_finding(images, labels, label_format=label_format, kinds=kinds, border=border,
                           detector=args.detector, cell_diameter=args.cell_diameter, limit=args.limit,
                           complete=complete, rows_out=out, progress=not args.quiet)
    reach = f"within {result.max_distance:.1f} px" if result.max_distance is not None else (
        "within half the median labelled radius, IoU >= 0.5")
    unlabelled = f" ({result.unlabelled} without labels left out)" if result.unlabelled else ""
    whole = "" if result.complete_fields is None else f", {result.complete_fields} with every cell labelled"
    seen = f" ({result.seen} the detector learned from left out)" if result.seen else ""
    print(f"{result.fields} field(s) of {what}{unlabelled}{seen}{whole}, {args.detector} detector, hits {reach}, "
          f"border rule {result.border}")
    for kind in result.recall_all:
        score = result.scores.get(kind)
        if score is not None:
            _print_scores({kind: score}, "" if result.complete_fields is None else
                          f" ({result.complete_fields} whole fields)")
        if result.complete_fields is not None:
            print(f"{kind} cells, recall over all {result.fields} fields (labelled in part or whole): "
                  f"{result.recall_all[kind]}")
    print(f"per image: {out}")


def _print_scores(scores: dict, whole: str = "") -> None:
    for kind, score in scores.items():
        error = score.median_abs_count_error
        print(f"{kind} cells{whole}: precision {score.precision}  recall {score.recall}  F1 {score.f1}  median "
              f"|count error| {100 * error.value:.1f}% [{100 * error.low:.1f}%, {100 * error.high:.1f}%]  "
              f"({score.hits:,} hits, {score.found:,} found, {score.labelled:,} labelled; {score.images} images; "
              "95% intervals over images)")


def cmd_cells_pool(args) -> None:
    from cellscreen.screen.score import pool_score_rows  # keeps start-up fast: SciPy

    _print_scores(pool_score_rows(args.scores, complete_only=not args.all_rows))


def add_parsers(commands) -> None:
    """screen and cells (score, train)."""
    from cellscreen.data.sources import PROFILES  # plain data; the profiles name the sets of labelled fields

    field_sets = [name for name, profile in PROFILES.items() if profile.fields is not None]
    _add_screen(commands, field_sets)
    cells = add_command(commands, "cells", help="find cells on smear fields and score the finding", examples=[
        "cellscreen cells score --dataset chula-rbc12",
        "cellscreen cells train --dataset chula-rbc12 --out runs/det-chula",
        "cellscreen cells pool runs/chula-f0-score.csv runs/chula-f1-score.csv"])
    cells_commands = cells.add_subparsers(title="commands", dest="cells_command", metavar="SUBCOMMAND",
                                          required=True)
    p = add_command(cells_commands, "score", help="score cell finding against annotated fields",
                    description="Find the cells of annotated smear fields and score them against the annotations "
                    "(one-to-one matching): precision, recall, F1 and the median absolute count error per image, "
                    "with 95% intervals over images, and a CSV row per image.", examples=[
                        "cellscreen cells score --dataset chula-rbc12 --out chula-cells.csv",
                        "cellscreen cells score --dataset txl-pbc --limit 100     # the first 100 fields",
                        "cellscreen cells score ~/fields --labels ~/fields/labels --format chula --border drop"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Fields and labels")
    group.add_argument("fields", nargs="?", metavar="FIELDS", help="folder of field images (with --dataset: the "
                       "dataset's folder, default: found under the data root)")
    group.add_argument("--dataset", "-d", choices=field_sets,
                       help="a known set of labelled fields (see `cellscreen datasets`)")
    group.add_argument("--labels", metavar="DIR", help="folder of label files, one per image with its name and .txt")
    group.add_argument("--format", choices=("chula", "yolo"), help="chula: one 'x y class' line per red cell "
                       "(cell centres); yolo: one 'class cx cy w h' line per cell (0 white, 1 red, 2 platelet, as "
                       "TXL-PBC)")
    group.add_argument("--border", choices=("keep", "drop", "spare"), help="found cells cut by the image border: "
                       "scored like others (keep), left out (drop, labels without border cells), or no false "
                       "positive when unmatched (spare, labels with some); default: the dataset's, else keep")
    group.add_argument("--limit", type=int, metavar="N", help="only the first N fields (by name)")
    group = p.add_argument_group("Cell finding")
    group.add_argument("--detector", default="classical", metavar="classical|learned:RUN",
                       help="classical: marker-controlled watershed, no training; learned:RUN: a finder trained "
                       "with `cellscreen cells train` (scored only on fields it was neither trained nor tuned on)")
    group.add_argument("--cell-diameter", type=float, metavar="PX", help="red cells' diameter in pixels "
                       "(default: measured in each field)")
    group = p.add_argument_group("Output")
    group.add_argument("--out", default="cells-score.csv", metavar="FILE", help="one row per image and kind of cell")
    group.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_cells_score)
    p = add_command(cells_commands, "pool", help="one score over several `cells score` files",
                    description="Pool the per-image rows of several `cells score` files into one score per kind "
                    "of cell (precision, recall, F1, median absolute count error, 95% intervals over images): "
                    "e.g. a learned finder trained once per fold of the labelled fields, each fold scored by the "
                    "finder that never saw it. An image scored in two files is refused.", examples=[
                        "cellscreen cells pool runs/chula-f0-score.csv runs/chula-f1-score.csv",
                        "cellscreen cells pool a.csv b.csv --all-rows     # the partly labelled fields too"])
    group = p.add_argument_group("Scores")
    group.add_argument("scores", nargs="+", metavar="SCORES", help="CSV files written by `cellscreen cells score`")
    group.add_argument("--all-rows", action="store_true", help="pool every row, not only the fields whose every "
                       "cell is labelled (where a file marks such fields)")
    p.set_defaults(func=cmd_cells_pool)
    _add_cells_train(cells_commands, field_sets)


def cmd_cells_train(args) -> None:
    from pathlib import Path  # keeps start-up fast

    from cellscreen.errors import UserError
    from cellscreen.screen.learned_train import train_detector  # loads PyTorch

    if args.dataset:
        from cellscreen.data.sources import get_profile, resolve_fields_dir

        profile = get_profile(args.dataset)
        root, fields = resolve_fields_dir(profile, args.fields, data=args.data), profile.fields
        images, labels = root / fields.images, Path(args.labels) if args.labels else root / fields.labels
        label_format, kinds, complete = args.format or fields.format, fields.kinds, fields.complete
        border = fields.border
    elif not args.fields or not args.labels or not args.format:
        raise UserError("give FIELDS, --labels and --format, or --dataset (see `cellscreen datasets`)")
    else:
        images, labels, label_format, kinds, complete, border = (Path(args.fields), Path(args.labels), args.format,
                                                                 None, (), "keep")
    fold, folds = 0, None
    if args.fold:
        try:
            fold, folds = (int(part) for part in args.fold.split("/"))
        except ValueError:
            raise UserError(f"--fold must be K/N, as 1/2 (got {args.fold!r})") from None
    done = train_detector(images, labels, args.out, label_format=label_format, yolo_kinds=kinds,
                          complete=complete, border=border, steps=args.steps, batch_size=args.batch_size,
                          crop=_whole_numbers(args.crop, '--crop'), width=args.width, work_diameter=args.work_diameter,
                          dilations=_whole_numbers(args.dilations, '--dilations'), white_weight=args.white_weight,
                          seed=args.seed, threads=args.threads, dataset=args.dataset, overwrite=args.overwrite,
                          progress=not args.quiet, fold=fold, folds=folds)
    split, train = done["fields"], done["train"]
    tuned = ", ".join(f"{kind} threshold {done['thresholds'][kind]:.2f} (tuning F1 {done['tuning'][kind]:.3f})"
                      for kind in done["kinds"])
    print(f"trained on {len(split['train'])} field(s) ({train['cells']:,} labelled cells), {train['steps']} steps "
          f"in {train['seconds']:.0f} s, loss {train['first_loss']:.3f} -> {train['last_loss']:.3f}; tuned on "
          f"{len(split['tuning'])}: {tuned}; {len(split['held_out'])} kept out for scoring")
    print(f"run folder {args.out}: score with `cellscreen cells score ... --detector learned:{args.out}`")


def _whole_numbers(text: str, option: str) -> tuple[int, ...]:
    """A comma-separated list of whole numbers, as 2,4,8."""
    from cellscreen.errors import UserError  # keeps start-up fast

    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"{option} must be whole numbers separated by commas, as 2,4,8 (got {text!r})") from None


def _add_cells_train(cells_commands, field_sets: list[str]) -> None:
    p = add_command(cells_commands, "train", help="train a learned cell finder on annotated fields",
                    description="Train a small network that finds red and white cells on a lab's own annotated "
                    "fields (points as Chula RBC-12, or YOLO boxes), export it to ONNX and choose how its heat maps "
                    "are read on tuning fields. One fold of the fields with every cell labelled (the set's list, see "
                    "--fold), or 3 of every 10 fields, are kept out for scoring.", examples=[
                        "cellscreen cells train --dataset chula-rbc12 --out runs/det-chula",
                        "cellscreen cells train --dataset chula-rbc12 --fold 1/2 --out runs/det-chula-1     # the "
                        "other half",
                        "cellscreen cells train ~/fields --labels ~/fields/labels --format yolo --out runs/det"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Fields and labels")
    group.add_argument("fields", nargs="?", metavar="FIELDS", help="folder of field images (with --dataset: the "
                       "dataset's folder, default: found under the data root)")
    group.add_argument("--dataset", "-d", choices=field_sets, help="a known set of labelled fields")
    group.add_argument("--labels", metavar="DIR", help="folder of label files, one per image with its name and .txt")
    group.add_argument("--format", choices=("chula", "yolo"), help="chula: one 'x y class' line per red cell; yolo: "
                       "one 'class cx cy w h' line per cell (0 white, 1 red, 2 platelet)")
    group = p.add_argument_group("Training")
    group.add_argument("--steps", type=int, default=1500, help="optimiser steps")
    group.add_argument("--batch-size", type=int, default=12, help="crops per step")
    group.add_argument("--crop", default="96", metavar="PX[,PX...]", help="side of the training crops, in work "
                       "pixels (a red cell is 16 across); a multiple of 4; several (as 64,96) take turns, step by step")
    group.add_argument("--width", type=int, default=12, help="channels of the network's narrowest layers "
                       "(its cost grows with the square)")
    group.add_argument("--work-diameter", type=float, default=16.0, help="pixels a red cell is made across "
                       "before the network sees a field (its cost grows with the square)")
    group.add_argument("--dilations", default="2,4", metavar="D,D,...", help="dilations of the network's context "
                       "layers at a quarter of the resolution; each 8 added sees about four red cells further")
    group.add_argument("--white-weight", type=float, default=1.0, help="how much the white cells' heat map "
                       "counts in the loss beside the red cells' (white cells are rare)")
    group.add_argument("--seed", type=int, default=0, help="seed of the weights, crops and augmentation")
    group.add_argument("--fold", metavar="K/N", help="with a set that names its fully labelled fields: deal them "
                       "into N folds, hold out fold K for scoring and learn from the others (default 0/2; 0/1 "
                       "holds them all out); train once per fold to score every one")
    group.add_argument("--threads", type=int, default=2, help="CPU threads PyTorch trains with")
    group = p.add_argument_group("Output")
    group.add_argument("--out", required=True, metavar="DIR", help="run folder (weights, model.json, ONNX graph)")
    group.add_argument("--overwrite", action="store_true", help="replace a finder already in --out")
    p.set_defaults(func=cmd_cells_train)


def _add_screen(commands, field_sets: list[str]) -> None:
    p = add_command(commands, "screen", help="find, classify and count every cell of whole smear field photographs",
                    description="Find every red and white cell of whole smear field photographs, classify each red "
                    "cell with a model, and count per image and sample (parasitemia with its 95% interval); with --cells "
                    "white, classify the white cells with a leukemia model and count the blast share instead. "
                    "Writes cells.csv, images.csv, samples.csv, an overlay per image and report.html into --out.",
                    examples=[
                        "cellscreen screen malaria ~/smears/patient-17 --out runs/patient-17",
                        "cellscreen screen runs/m1 ~/smears --shard 0/2 --out runs/s0     # then --shard 1/2 "
                        "elsewhere; join: --merge runs/s0 runs/s1 --out runs/all",
                        "cellscreen screen --cells white --model runs/all1 ~/smears/patient-17 --out runs/p17-blasts"
                        "     # blast share"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Model")
    group.add_argument("model", nargs="?", metavar="MODEL", help="run folder, model.json, .onnx file, or a bundled "
                       "name (malaria)")
    group.add_argument("--engine", choices=("auto", "torch", "onnx", "int8", "ray"), default="auto",
                       help="what runs the model: auto (onnxruntime for networks, PyTorch for SVMs and ensembles), "
                       "PyTorch, its ONNX graph or its 8-bit graph; ray: screen the fields on a Ray cluster with "
                       "Ray Data, the same files written here (pip install 'cellscreen[ray]'); or spread a run "
                       "over machines with --shard")
    group.add_argument("--ray-address", metavar="ADDRESS", help="with --engine ray: the cluster to run on, e.g. "
                       "auto or ray://head:10001 (default: $RAY_ADDRESS, else a local Ray instance); its workers "
                       "read the inputs by the same path, so they must be on storage every node mounts there")
    group.add_argument("--model", dest="model_option", metavar="RUN", help="the model, instead of MODEL")
    group.add_argument("--cells", choices=("red", "white"), default="red", help="the cells the model classifies: "
                       "red (a malaria model; parasitemia) or white (a leukemia model trained on cnmc or taleqani; "
                       "blast share)")
    group.add_argument("--blast-classes", metavar="A,B", help="with --cells white: the model's classes that count "
                       "as blasts (default: its positive class, else Early,Pre,Pro for taleqani)")
    group.add_argument("--batch-size", type=int, default=256, help="cells the model runs at once")
    group.add_argument("--workers", type=int, default=None, help="processes screening fields side by side "
                       "(default: one per core; 0: everything in this process); with --engine ray: Ray actors "
                       "(default: one per CPU of the cluster)")
    group.add_argument("--detector", default="classical", metavar="classical|learned:RUN", help="what finds the "
                       "cells: classical (marker-controlled watershed, no training) or a finder trained with "
                       "`cellscreen cells train`")
    group = p.add_argument_group("Cell size and samples")
    group.add_argument("--cell-diameter", type=float, metavar="PX", help="red cells' diameter in pixels "
                       "(default: measured in each field)")
    group.add_argument("--microns-per-pixel", type=float, metavar="UM", help="the camera's scale; red cells are "
                       "taken as 7.5 um across (instead of --cell-diameter)")
    group.add_argument("--group-regex", metavar="REGEX", help="read the sample from file names with this pattern's "
                       "first group (default: a sample is a folder)")
    group = p.add_argument_group("Inputs and output")
    group.add_argument("inputs", nargs="*", metavar="INPUT", help="field images (PNG, JPEG, TIFF, BMP) or folders")
    group.add_argument("--dataset", "-d", choices=field_sets, help="screen a known set of smear fields too, found "
                       "under the data root (see `cellscreen datasets`)")
    group.add_argument("--out", required=True, metavar="DIR", help="folder for the results")
    group.add_argument("--shard", metavar="i/N", help="only this shard of the inputs (join with --merge)")
    group.add_argument("--merge", nargs="+", metavar="PART", help="join the --out folders of --shard 0/N ... "
                       "N-1/N into --out (no MODEL or INPUT)")
    group.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --out")
    group.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.set_defaults(func=cmd_screen)
