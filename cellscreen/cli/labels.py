"""Commands that find and review wrong labels: labels audit, labels review, labels export."""

from __future__ import annotations

import os
from pathlib import Path

from cellscreen.cli.options import add_command, common_options, is_loopback, list_presets_text, relabel_option
from cellscreen.errors import UserError

__all__ = ["add_parsers"]


def cmd_audit(args) -> None:
    from cellscreen.labels.audit import run_label_audit  # keeps start-up fast: cleanlab, and PyTorch to train

    # rounds and what a further round leaves out: the library's defaults unless given; one round when ranking
    # a given out-of-fold file (a further round would train)
    rounds = 1 if args.oof and args.rounds is None else args.rounds
    chosen = {name: value for name, value in (("rounds", rounds), ("leave_out_by", args.leave_out_by))
              if value is not None}
    audit = run_label_audit(args.dataset or "folder", out=args.out, data=args.dir or args.data,
                            relabel=args.relabel or [], group_regex=args.group_regex, folds=args.folds,
                            preset=args.preset, settings=args.set or [], seeds=args.seeds, oof=args.oof,
                            filter_by=args.filter_by, max_suspects=args.max_suspects, show=args.show,
                            workers=args.workers, progress=not args.quiet, **chosen)
    print(f"{len(audit.suspects):,} suspect label(s) among {audit.cells:,} cells "
          f"({len(audit.suspects) / max(audit.cells, 1):.1%})")
    for row in audit.per_class:
        print(f"  {row['class']:<14}{row['flagged']:>6,} of {row['cells']:,} flagged; estimated wrong "
              f"{row['estimated_noise_rate']:.1%}")
    noisiest = [row for row in audit.per_slide if row["flagged"]][:3]
    if noisiest:
        print("  most suspects: " + ", ".join(f"{row['slide']} ({row['flagged']} of {row['cells']})"
                                              for row in noisiest))
    out = Path(args.out)
    print(f"written: {out / 'report.html'}, {out / 'suspects.csv'} and {out / 'suggested-relabel.csv'}")
    print(f"review them: cellscreen labels review {out} --reviewer NAME")


def cmd_review(args) -> None:
    from cellscreen.labels.review import serve_review  # keeps start-up fast: FastAPI and uvicorn

    if not is_loopback(args.host):
        raise UserError(f"--host {args.host} would let other machines see the cells and record decisions: the "
                        "review page has no login, so it serves this machine only (127.0.0.1 or localhost)")
    serve_review(args.audit, reviewer=args.reviewer or "", host=args.host, port=args.port,
                 log_level="warning" if args.quiet else "info")


def cmd_export(args) -> None:
    from cellscreen.labels.decisions import export_decisions  # keeps start-up fast

    if args.out and Path(args.out).exists() and not args.overwrite:
        raise UserError(f"{args.out} exists; pass --overwrite to replace it")
    path, rows = export_decisions(args.audit, args.out)
    print(f"{rows:,} decision(s) to flip or exclude a cell: {path}")
    print(f"use it with any command that reads the dataset, e.g. cellscreen data info --relabel {path}")


def add_parsers(commands) -> None:
    """labels (audit, review, export)."""
    labels = add_command(commands, "labels", help="find, review and correct wrong labels", examples=[
        "cellscreen labels audit -d malaria-nih --out runs/audit",
        "cellscreen labels review runs/audit --reviewer jd"])
    sub = labels.add_subparsers(title="commands", dest="labels_command", metavar="SUBCOMMAND", required=True)
    _add_audit(sub)

    p = add_command(sub, "review", help="a local page to go through an audit's suspects: keep, flip, exclude or "
                    "unsure, each decision saved at once", examples=[
                        "cellscreen labels review runs/audit --reviewer jd     # then open http://127.0.0.1:8001",
                        "cellscreen labels review runs/audit --reviewer jd --port 8011"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Review")
    group.add_argument("audit", metavar="AUDIT", help="the folder `cellscreen labels audit` wrote")
    group.add_argument("--reviewer", default=os.environ.get("USER"), metavar="NAME",
                       help="who decides, recorded with every decision (default: $USER)")
    group.add_argument("--host", default="127.0.0.1", help="address to serve on: this machine only")
    group.add_argument("--port", type=int, default=8001, help="port of the page")
    p.set_defaults(func=cmd_review)

    p = add_command(sub, "export", help="write a review's decisions as a relabel file", examples=[
        "cellscreen labels export runs/audit --out runs/relabel.csv",
        "cellscreen labels export runs/audit     # into runs/audit/review-relabel.csv"])
    group = p.add_argument_group("Review")
    group.add_argument("audit", metavar="AUDIT", help="the audit folder the review's decisions are in")
    group = p.add_argument_group("Output")
    group.add_argument("--out", metavar="CSV", help="relabel file to write (default: AUDIT/review-relabel.csv)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=cmd_export)


def _add_audit(sub) -> None:
    p = add_command(sub, "audit", help="rank the cells most likely filed under the wrong class, from slide-disjoint "
                    "out-of-fold predictions and confident learning (cleanlab)", examples=[
                        "cellscreen labels audit -d malaria-nih --out runs/audit",
                        "cellscreen labels audit ~/cells --group-regex '^(P\\d+)_' --folds 5 --seeds 0 1 "
                        "--out runs/own-audit     # your own folder; two models per fold",
                        "cellscreen labels audit -d malaria-nih --oof runs/audit/oof.csv --max-suspects 200 "
                        "--out runs/audit-top200     # rank again, no training"])
    common_options(p.add_argument_group("Common options"))
    group = p.add_argument_group("Dataset parameters")
    group.add_argument("dir", nargs="?", metavar="DIR", help="dataset folder (default: found under the data root)")
    group.add_argument("--dataset", "-d", default=None, help="dataset profile (see `cellscreen datasets`; "
                       "default: folder)")
    group.add_argument("--group-regex", metavar="REGEX",
                       help="read the patient/slide id from file names with this pattern, e.g. '^(P\\d+)_'")
    group.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    relabel_option(group)
    group = p.add_argument_group("Out-of-fold predictions")
    group.add_argument("--folds", type=int, default=5, help="folds by slide: every cell is scored by a model "
                       "that never saw its slide")
    group.add_argument("--preset", default="default", help="training recipe of each fold; presets: "
                       + list_presets_text())
    group.add_argument("--set", action="append", metavar="FIELD=VALUE", help="a training setting (repeatable)")
    group.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED",
                       help="train each fold once per seed and average (an ensemble; default: 0)")
    group.add_argument("--rounds", type=int, help="audit rounds: each further round trains again without the "
                       "cells the previous round picked (default: 2, or 1 with --oof)")
    group.add_argument("--leave-out-by", metavar="FILTER", help="the cleanlab filter that picks the cells a "
                       "further round leaves out (default: predicted_neq_given, every cell the models disagree "
                       "with)")
    group.add_argument("--oof", metavar="CSV", help="rank from this out-of-fold file (an audit's oof.csv) "
                       "instead of training")
    group = p.add_argument_group("Ranking")
    group.add_argument("--filter-by", default="prune_by_noise_rate", metavar="FILTER",
                       help="cleanlab's rule for how many cells to flag: prune_by_noise_rate, prune_by_class, "
                       "both, confident_learning, predicted_neq_given, ...")
    group.add_argument("--max-suspects", type=int, metavar="N", help="flag at most N cells")
    group = p.add_argument_group("Output")
    group.add_argument("--out", required=True, metavar="AUDIT", help="audit folder (rerun to resume its training)")
    group.add_argument("--show", type=int, default=60, help="suspects pictured in report.html")
    p.set_defaults(func=cmd_audit)
